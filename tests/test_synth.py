"""The embedded corpus generator: determinism, DFDC metadata, fake/original structure, MTCNN figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.common import config_hash, from_dict, to_dict
from features.synth import SynthConfig, generate_corpus
from features.synth.__main__ import main as synth_main
from features.synth.corpus import CONFIG_FILE, corpus_key
from features.synth.fake import ARTIFACTS, sample_fake
from features.synth.measure import detection_table, read_frames

SEED = 3
MIN_DETECTION_RATE = 0.95
DETECT_EVERY = 4  # MTCNN on every 4th frame keeps the check quick


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return generate_corpus(tmp_path_factory.mktemp("synth"), SynthConfig.tiny(seed=SEED), progress=False)


@pytest.fixture(scope="module")
def meta(corpus) -> dict:
    return json.loads((corpus / "metadata.json").read_text())


@pytest.fixture(scope="module")
def truth(corpus) -> pd.DataFrame:
    return pd.read_parquet(corpus / "ground_truth.parquet")


@pytest.fixture(scope="module")
def params(corpus) -> pd.DataFrame:
    return pd.read_parquet(corpus / "fake_params.parquet")


def test_same_seed_gives_identical_corpus_and_other_seed_differs(corpus, meta, tmp_path):
    again = generate_corpus(tmp_path / "again", SynthConfig.tiny(seed=SEED, workers=2), progress=False)
    assert (again / "metadata.json").read_bytes() == (corpus / "metadata.json").read_bytes()
    assert (again / "test_labels.csv").read_bytes() == (corpus / "test_labels.csv").read_bytes()
    for name in sorted(meta)[:3]:
        assert (again / name).read_bytes() == (corpus / name).read_bytes(), name
        assert all(np.array_equal(a, b) for a, b in zip(read_frames(again / name), read_frames(corpus / name)))
    other = generate_corpus(tmp_path / "other", SynthConfig.tiny(seed=SEED + 1), progress=False)
    other_meta = json.loads((other / "metadata.json").read_text())
    assert set(other_meta).isdisjoint(meta)
    first = read_frames(other / sorted(other_meta)[0])[0]
    mine = read_frames(corpus / sorted(meta)[0])[0]
    assert first.shape != mine.shape or np.abs(first.astype(int) - mine).mean() > 5


def test_metadata_has_the_dfdc_schema(corpus, meta):
    cfg = SynthConfig.tiny(seed=SEED)
    train = {k: v for k, v in meta.items() if v["split"] == "train"}
    test = {k: v for k, v in meta.items() if v["split"] == "test"}
    assert set(meta) == set(train) | set(test)
    assert all(len(k) == 14 and k.endswith(".mp4") and k[:10].isalpha() and k[:10].islower() for k in meta)
    assert all((corpus / k).is_file() for k in meta)
    reals = {k for k, v in train.items() if v["label"] == "REAL"}
    assert len(reals) == cfg.n_originals
    for k, v in train.items():
        assert set(v) == {"label", "split", "original"}
        if v["label"] == "REAL":
            assert v["original"] is None
        else:
            assert v["label"] == "FAKE" and v["original"] in reals
    counts = pd.Series([v["original"] for v in train.values() if v["label"] == "FAKE"]).value_counts()
    assert set(counts.index) == reals and counts.between(*cfg.fakes_per_original).all()
    assert all(v == {"split": "test"} for v in test.values())
    labels = pd.read_csv(corpus / "test_labels.csv")
    assert list(labels.columns) == ["filename", "label"]
    assert set(labels["filename"]) == set(test) and len(labels) == len(test)
    assert set(labels["label"]) <= {0, 1} and (labels["label"] == 0).sum() == cfg.n_test_originals


def test_fake_matches_its_original_except_in_the_face(corpus, meta, params, truth):
    for fake in params.itertuples():
        f_frames, o_frames = read_frames(corpus / fake.video_id), read_frames(corpus / fake.original)
        assert len(f_frames) == len(o_frames) == SynthConfig.tiny().n_frames
        assert f_frames[0].shape == o_frames[0].shape
        boxes = truth[(truth["video_id"] == fake.original) & (truth["person"] == 0) & truth["in_frame"]]
        inside, outside = [], []
        for b in boxes.itertuples():
            diff = np.abs(f_frames[b.frame_idx].astype(np.float32) - o_frames[b.frame_idx]).mean(axis=2)
            box = np.zeros(diff.shape, bool)
            box[max(int(b.y0), 0):int(b.y1), max(int(b.x0), 0):int(b.x1)] = True
            inside.append(diff[box].mean())
            outside.append(diff[~box].mean())
        assert np.mean(inside) > 2.0, fake.video_id  # a different person is in the box
        assert np.mean(outside) < 0.35 * np.mean(inside), fake.video_id


def test_real_and_fake_share_format_and_global_statistics(corpus, params):
    for fake in params.itertuples():
        f_frames, o_frames = read_frames(corpus / fake.video_id), read_frames(corpus / fake.original)
        assert f_frames[0].shape == o_frames[0].shape
        # whole-frame brightness moves by far less than it varies between videos
        assert abs(np.mean(f_frames) - np.mean(o_frames)) < 3.0, fake.video_id


def test_fakes_carry_random_artifact_strengths(params):
    strengths = params[["seam", "colour", "resolution", "flicker"]]
    assert strengths.min().min() >= 0 and strengths.max().max() <= 1
    assert strengths.std().min() > 0  # per fake, not one setting for all


@pytest.mark.parametrize("share", [0.0, 0.3])
def test_invisible_share_sets_the_share_of_artifact_free_fakes(share):
    """The demo's default (0) has no invisible fakes; a share > 0 gives that many, all strengths
    at most invisible_max (the label noise no detector can see)."""
    cfg = SynthConfig(invisible_share=share)
    rng = np.random.default_rng(0)
    specs = [sample_fake(rng, None, cfg) for _ in range(400)]
    invisible = np.array([max(sp.strengths().values()) <= cfg.invisible_max for sp in specs])
    assert invisible.any() if share else not invisible.any()
    assert abs(invisible.mean() - share) < 0.06
    assert set(specs[0].strengths()) == set(ARTIFACTS)


def test_ground_truth_covers_every_frame_of_every_video(meta, truth):
    n = SynthConfig.tiny().n_frames
    per_video = truth[truth["person"] == 0].groupby("video_id")["frame_idx"].nunique()
    assert set(per_video.index) == set(meta) and (per_video == n).all()
    assert truth["in_frame"].mean() > 0.5


def test_mtcnn_finds_the_face_in_nearly_every_frame(corpus):
    det = detection_table(corpus, every=DETECT_EVERY, progress=False)
    assert len(det) > 20
    rate = det["detected"].mean()
    assert rate >= MIN_DETECTION_RATE, f"MTCNN detection rate {rate:.3f} on {len(det)} faces"


def test_rerun_is_a_no_op_and_other_config_is_refused(corpus, meta, monkeypatch):
    import features.synth.corpus as corpus_mod

    def boom(*args, **kwargs):
        raise AssertionError("a finished corpus was rendered again")

    monkeypatch.setattr(corpus_mod, "render_group", boom)
    assert generate_corpus(corpus, SynthConfig.tiny(seed=SEED, workers=3), progress=False) == corpus
    with pytest.raises(FileExistsError, match="another config"):
        generate_corpus(corpus, SynthConfig.tiny(seed=SEED + 7), progress=False)


def test_interrupted_run_resumes_to_the_same_bytes(tmp_path):
    cfg = SynthConfig.tiny(seed=5, n_originals=1, n_test_originals=0, n_frames=6)
    root = generate_corpus(tmp_path / "c", cfg, progress=False)
    reference = {p.name: p.read_bytes() for p in root.glob("*.mp4")}
    meta_bytes = (root / "metadata.json").read_bytes()
    (root / "metadata.json").unlink()  # as if stopped before the end
    next(iter((root / ".synth_parts").glob("*.gt.parquet"))).unlink()
    generate_corpus(root, cfg, progress=False)
    assert (root / "metadata.json").read_bytes() == meta_bytes
    assert {p.name: p.read_bytes() for p in root.glob("*.mp4")} == reference


def test_config_round_trips_and_cli_writes_a_corpus(tmp_path):
    cfg = SynthConfig.tiny(seed=2)
    again = from_dict(SynthConfig, json.loads(json.dumps(to_dict(cfg))))
    assert config_hash(again) == config_hash(cfg) and corpus_key(again) == corpus_key(cfg)
    assert corpus_key(cfg) == corpus_key(cfg.replace(workers=4))
    with pytest.raises(ValueError):
        SynthConfig(fakes_per_original=(5, 4))
    root = synth_main([str(tmp_path / "cli"), "--tiny", "--seed", "9", "--n-originals", "1",
                       "--n-test-originals", "0", "--n-frames", "4", "--quiet"])
    saved = json.loads((root / CONFIG_FILE).read_text())
    assert saved["config"]["seed"] == 9 and saved["config"]["n_frames"] == 4
    assert len(json.loads((root / "metadata.json").read_text())) in (5, 6)
