"""Configs: every profile and every README `--set` example loads; wrong types and ranges fail on
load with the key named; runtime fields never reach a cache key."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from features.common import ConfigError, config_hash, from_dict, result_dict
from features.faces.config import FaceConfig
from features.faces.extract import cache_fields
from pipelines import oof, predict, stack
from pipelines.config import build_config, profiles

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"oof": oof.OOFConfig, "stack": stack.StackConfig, "predict": predict.PredictConfig}
SCRIPTS = {"pipelines/oof.py": "oof", "pipelines/stack.py": "stack", "pipelines/predict.py": "predict",
           "fakestack-oof": "oof", "fakestack-stack": "stack", "fakestack-predict": "predict"}


@pytest.mark.parametrize("profile", profiles())
@pytest.mark.parametrize("pipeline", sorted(CONFIGS))
def test_every_profile_loads(profile, pipeline):
    cfg = build_config(CONFIGS[pipeline], pipeline, profile)
    assert isinstance(cfg, CONFIGS[pipeline])


def readme_commands() -> list[tuple[str, str, list[str]]]:
    """(pipeline, profile, overrides) of every README command line that runs a pipeline."""
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        script = next((s for s in SCRIPTS if s in line), None)
        if script is None or "--set" not in line:
            continue
        words = shlex.split(line[line.index(script):].split("&&")[0].split("#")[0])
        profile = words[words.index("--profile") + 1] if "--profile" in words else "demo"
        sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
        found.append((SCRIPTS[script], profile, sets))
    return found


def test_the_readme_has_set_examples():
    assert len(readme_commands()) >= 3


@pytest.mark.parametrize("pipeline,profile,sets", readme_commands())
def test_every_readme_set_example_loads(pipeline, profile, sets):
    build_config(CONFIGS[pipeline], pipeline, profile, sets)


@pytest.mark.parametrize("override,named", [
    ("train.epochs=abc", "train.epochs"),
    ("train.epochs=2.5", "train.epochs"),
    ("train.epochs=0", "epochs"),
    ("faces.n_frames=many", "faces.n_frames"),
    ("faces.margin=-1", "margin"),
    ("folds.k=[3]", "folds.k"),
    ("progress=maybe", "progress"),
    ("train.amp=3", "train.amp"),
])
def test_wrong_type_or_range_fails_on_load_naming_the_key(override, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        build_config(oof.OOFConfig, "oof", "demo", [override])


def test_a_bad_setting_ends_with_one_message_and_status_2(capsys):
    with pytest.raises(SystemExit) as err:
        oof.main(["--set", "train.epochs=abc"])
    assert err.value.code == 2
    err_text = capsys.readouterr().err  # argparse's usage, then one error line
    assert "Traceback" not in err_text and err_text.count("error:") == 1
    assert "train.epochs" in err_text.strip().splitlines()[-1]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
@pytest.mark.parametrize("override,named", [("faces.device=cuda", "faces.device"),
                                            ("train.device=cuda:1", "train.device")])
def test_a_device_this_machine_lacks_is_one_message_before_any_work(override, named, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(oof, "generate_corpus", lambda *a, **k: pytest.fail("work began before the device check"))
    with pytest.raises(SystemExit) as err:
        oof.main(["--set", override, "--set", f"workdir={tmp_path}"])
    assert err.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert named in last and "not available" in last and "Traceback" not in last


def test_numbers_yaml_leaves_as_strings_still_load():
    cfg = build_config(oof.OOFConfig, "oof", "demo", ["train.lr=1e-3", "faces.thresholds=[0.5, 0.6, 0.7]"])
    assert cfg.train.lr == pytest.approx(1e-3) and cfg.faces.thresholds == (0.5, 0.6, 0.7)


def test_runtime_fields_never_reach_a_key_but_threads_and_devices_do():
    base = build_config(oof.OOFConfig, "oof", "demo")
    same = build_config(oof.OOFConfig, "oof", "demo", [
        "faces.workers=7", "faces.decode_threads=3", "synth.workers=5", "unit_workers=2", "engine=ray",
        "progress=false", "workdir=/elsewhere", "tracking_uri=sqlite:///x.db"])
    assert oof.run_key(same) == oof.run_key(base)
    assert cache_fields(same.faces) == cache_fields(base.faces)
    for changed in ("train.num_threads=2", "faces.device=cuda", "train.device=cuda:1", "faces.n_frames=7"):
        assert oof.run_key(build_config(oof.OOFConfig, "oof", "demo", [changed])) != oof.run_key(base), changed


def test_result_dict_drops_runtime_fields_through_nesting():
    d = result_dict(build_config(oof.OOFConfig, "oof", "demo"))
    assert "workers" not in d["faces"] and "progress" not in d and "n_frames" in d["faces"]
    assert config_hash(FaceConfig(workers=1)) == config_hash(FaceConfig(workers=4))


def test_from_dict_rejects_unknown_keys_with_the_valid_ones():
    with pytest.raises(ConfigError, match="valid:"):
        from_dict(FaceConfig, {"n_framez": 3})
