"""Config, registry, hash and atomic-write helpers shared by every stage."""

from dataclasses import dataclass, field

import pandas as pd
import pytest

from features.common import ConfigError, Registry, atomic_write_parquet, config_hash, from_dict, to_dict
from pipelines.config import apply_override, build_config, load_profile, profiles


@dataclass
class Inner:
    size: int = 3
    name: str = "a"


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    learners: dict[str, Inner] = field(default_factory=dict)
    bounds: tuple[float, float] = (0.0, 1.0)
    rate: float = 1.0


def test_from_dict_builds_nested_and_rejects_unknown_keys():
    cfg = from_dict(Outer, {"inner": {"size": 5}, "learners": {"m": {"name": "x"}}, "bounds": [0.1, 0.9], "rate": 2})
    assert cfg.inner.size == 5 and cfg.learners["m"].name == "x"
    assert cfg.bounds == (0.1, 0.9) and isinstance(cfg.rate, float)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['sise'\].*valid: \['name', 'size'\]"):
        from_dict(Outer, {"inner": {"sise": 5}})
    assert to_dict(cfg)["bounds"] == [0.1, 0.9]


def test_registry_lists_valid_names():
    reg = Registry("widget")
    reg.register("b")(1)
    reg.register("a")(2)
    assert reg.get("a") == 2 and reg.names() == ["a", "b"]
    with pytest.raises(KeyError, match="unknown widget 'c'; valid: a, b"):
        reg.get("c")
    with pytest.raises(ValueError, match="twice"):
        reg.register("a")(3)


def test_config_hash_changes_with_content_only():
    df = pd.DataFrame({"video_id": ["a", "b"], "x": [1, 2]})
    assert config_hash(Outer(), df) == config_hash(Outer(), df.copy())
    assert config_hash(Outer(), df) != config_hash(Outer(rate=2.0), df)
    assert config_hash(df) != config_hash(df.assign(x=[1, 3]))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = atomic_write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "sub" / "t.parquet")
    assert pd.read_parquet(path)["a"].tolist() == [1]
    assert [p.name for p in path.parent.iterdir()] == ["t.parquet"]


def test_overrides_and_profiles():
    data = {"faces": {"n_frames": 8}}
    apply_override(data, "faces.n_frames=16")
    apply_override(data, "train.lr=1e-3")
    assert data == {"faces": {"n_frames": 16}, "train": {"lr": 1e-3}}
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_override(data, "faces.n_frames")
    assert {"demo", "full"} <= set(profiles())
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_profile("nope", "oof")
    cfg = build_config(Outer, "no-such-pipeline", "demo", ["inner.size=7"])
    assert cfg.inner.size == 7
