"""Self-blended images (base_learners.sbi, issue 28): the recipe, its keys, fold discipline, the unit
and the packaged detector with a self-blended learner."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from unit_data import CROPS_KEY, LEARNERS, TRAIN, make_crops, make_tables, write_cache

import base_learners.sbi as sbi
import mlflow
from base_learners.oof import _NoHooks, merge_train_config, plan_units, run_oof, train_unit
from base_learners.registry import build_learner
from base_learners.sbi import BlendedCrops, FaceRegions, SBIConfig, assumed_box, blend_mask, region_mask, self_blend
from base_learners.train import TrainConfig, _blend_loader, fit, predict_logits, seed_everything
from features.common import ConfigError, config_hash, from_dict, to_dict
from features.contract import frames_table
from features.faces import cache
from features.faces.source import CropSource
from features.synth import SynthConfig, generate_corpus
from pipelines.scoring.inputs import ALLOWED_ROOTS_ENV

# config_hash of the defaults as at the commit before self-blending (git show HEAD:base_learners/train.py):
# a new TrainConfig field at its default must leave every unit key as it was
DEFAULT_TRAIN_KEY = "bd3e39b58401a1e8"
UNIT_DATA_TRAIN_KEY = "a17f62634dd901f0"
UNIT_DATA_KEYS = ["6d2059ddb62979aa", "09d2c91dea592ae0"]
SBI_TRAIN = dataclasses.replace(TRAIN, target="self_blended", epochs=2, batch_size=8)
SIZE = 64
N_SEEDS = 25
FACE_POINTS = 68
ATOL = 1e-6


def _face(size: int = SIZE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def _hull_points(size: int = SIZE) -> np.ndarray:
    """68 points on an off-centre oval: a face's landmarks as the hull sees them."""
    t = np.linspace(0, 2 * np.pi, FACE_POINTS, endpoint=False)
    return np.stack([0.45 * size + 0.2 * size * np.cos(t), 0.55 * size + 0.25 * size * np.sin(t)], 1).astype(np.float32)


# ---------------------------------------------------------------- config and keys


def test_default_train_config_keeps_every_unit_key():
    assert config_hash(TrainConfig()) == DEFAULT_TRAIN_KEY
    assert config_hash(TrainConfig(target="labels")) == DEFAULT_TRAIN_KEY
    assert config_hash(TRAIN) == UNIT_DATA_TRAIN_KEY
    faces, videos, folds = make_tables()
    frames = frames_table(faces, videos, folds)
    keys = [u.key for u in plan_units(frames, LEARNERS, {"meso4": TRAIN}, Path("units"), CROPS_KEY)]
    assert keys == UNIT_DATA_KEYS
    sbi_keys = [u.key for u in plan_units(frames, LEARNERS, {"meso4": SBI_TRAIN}, Path("units"), CROPS_KEY)]
    assert not set(sbi_keys) & set(keys)


def test_target_is_a_train_override_and_round_trips():
    cfg = merge_train_config(TrainConfig(), {"target": "self_blended", "sbi": {"blend_ratio": 0.25}}, "t")
    assert cfg.sbi.blend_ratio == 0.25 and cfg.sbi.mask_scale == SBIConfig().mask_scale
    assert merge_train_config(TrainConfig(), {"target": "self_blended"}, "t").sbi == SBIConfig()
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg  # how the detector reads a unit's train config
    assert config_hash(cfg) != config_hash(dataclasses.replace(cfg, sbi=SBIConfig()))


@pytest.mark.parametrize("override", [
    {"target": "pseudo"}, {"sbi": {}}, {"target": "self_blended", "balance": "sampler"},
    {"target": "self_blended", "sbi": {"blend_ratio": 1.0}}, {"target": "self_blended", "sbi": {"frequency": ["warp"]}},
    {"target": "self_blended", "batch_size": 1}])
def test_bad_settings_fail_on_load(override):
    with pytest.raises(ConfigError):
        merge_train_config(TrainConfig(), override, "t")


# ---------------------------------------------------------------- the blends


def test_blends_are_deterministic_for_a_seed_and_sample():
    crops = np.stack([_face(seed=i) for i in range(3)])
    regions = FaceRegions(assumed_box(0.25))
    a, b = BlendedCrops(crops, regions, SBIConfig(), seed=7), BlendedCrops(crops, regions, SBIConfig(), seed=7)
    for i in range(3):
        (ba, ma), (bb, mb) = a.blend(i), b.blend(i)
        assert np.array_equal(ba, bb) and np.array_equal(ma, mb)
    assert not np.array_equal(a.blend(0)[0], a.blend(0, copy=1)[0])
    assert not np.array_equal(a.blend(0)[0], BlendedCrops(crops, regions, SBIConfig(), seed=8).blend(0)[0])
    b.epoch = 1
    assert not np.array_equal(a.blend(0)[0], b.blend(0)[0])
    assert np.array_equal(a[0], crops[0]) and np.array_equal(a[3], a.blend(0)[0])  # items: reals, then blends
    assert a.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_training_batches_do_not_depend_on_workers():
    """Half of every batch real, half the blends of those same crops, identical with 0 or 2 workers."""
    crops = np.stack([_face(seed=i) for i in range(12)])
    model = build_learner(LEARNERS["meso4"])
    batches = []
    for workers in (0, 2):
        cfg = dataclasses.replace(SBI_TRAIN, num_workers=workers)
        loader = _blend_loader(crops, FaceRegions(assumed_box(0.25)), model, cfg)
        loader.dataset.epoch = 1
        batches.append([(x.clone(), y.clone()) for x, y in loader])
    assert len(batches[0]) == len(crops) // (SBI_TRAIN.batch_size // 2)
    for (xa, ya), (xb, yb) in zip(*batches):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert ya.tolist() == [0.0] * 4 + [1.0] * 4


@pytest.mark.parametrize("hull", [False, True])
def test_masks_lie_inside_the_face(hull):
    """Mask > 0 only inside the face region (the ellipse in the face box, or the landmarks' hull),
    whatever the draw, even at the strongest warp and blur."""
    points = _hull_points() if hull else None
    box = assumed_box(0.25)
    region = region_mask(SIZE, box, points, SBIConfig().ellipse_aspect).astype(bool)
    x0, y0 = (int(np.floor(v * SIZE)) for v in box[:2])  # pixels whose centres may lie in the box
    x1, y1 = (int(np.ceil(v * SIZE)) for v in box[2:])
    for cfg in (SBIConfig(), SBIConfig(warp_strength=0.15, mask_blur=(0.05, 0.05), mask_scale=(1.0, 1.0))):
        for seed in range(N_SEEDS):
            mask = blend_mask(SIZE, box, points, cfg, np.random.default_rng(seed))
            assert mask.max() == pytest.approx(1.0) and mask.min() >= 0
            assert not mask[~region].any()
            if not hull:
                assert not mask[:y0].any() and not mask[y1:].any() and not mask[:, :x0].any() and not mask[:, x1:].any()


def test_the_blend_changes_nothing_outside_the_mask():
    crop = _face()
    cfg = SBIConfig(p_color_source=1.0)  # colour goes to the source: the target is the crop as is
    for seed in range(N_SEEDS):
        blend, mask = self_blend(crop, assumed_box(0.25), None, cfg, np.random.default_rng(seed))
        assert np.array_equal(blend[mask == 0], crop[mask == 0])
        assert not np.array_equal(blend[mask > 0], crop[mask > 0])


# ---------------------------------------------------------------- fold discipline and the unit


def _unit_data():
    faces, videos, folds = make_tables()
    frames = frames_table(faces, videos, folds)
    return frames, make_crops(frames)


def test_no_held_out_face_reaches_a_training_blend(monkeypatch, tmp_path):
    """Each unit's blends (training batches and inner validation alike) read only real faces of its
    training folds: no fake, no held-out face, no test face; and it predicts its held-out fold's
    reals and fakes like any learner."""
    frames, crops = _unit_data()
    row_of = {c.tobytes(): r for r, c in enumerate(crops)}  # the crops are random: each one is unique
    read: list[int] = []
    real_blend = sbi.self_blend

    def spy(crop, *args):
        read.append(row_of[np.asarray(crop).tobytes()])
        return real_blend(crop, *args)

    monkeypatch.setattr(sbi, "self_blend", spy)
    tcfg = dataclasses.replace(SBI_TRAIN, inner_val_frac=0.5, early_stopping_patience=1)
    label, fold = frames["label"].to_numpy(float), frames["fold"].to_numpy(float)
    units = plan_units(frames, LEARNERS, {"meso4": tcfg}, tmp_path, CROPS_KEY)
    for unit in units:
        read.clear()
        result = train_unit(unit, frames, crops, LEARNERS["meso4"], tcfg, _NoHooks(), progress=False)
        rows = np.array(sorted(set(read)))
        training_reals = np.flatnonzero((label == 0) & (fold != unit.fold) & ~np.isnan(fold))
        assert len(rows) and set(rows) <= set(training_reals), f"fold {unit.fold} blended {rows}"
        assert result.info["history"][0]["inner_val_loss"] is not None  # the inner split was scored
        oof = result.preds[result.preds["role"] == "oof"]  # the held-out fold's reals AND fakes are predicted
        held = frames[frames["fold"] == unit.fold]
        assert len(oof) == len(held) and set(held["label"]) == {0, 1}
        assert result.info["n_train"] == int(((fold != unit.fold) & ~np.isnan(fold)).sum())


def test_the_unit_trains_from_the_face_cache_and_passes_the_oof_checks(tmp_path):
    """Through a CropSource (the pipeline's path): the face regions come from the cache (68-point
    landmarks -> hulls), every unit trains, and run_oof's integrity checks pass."""
    frames, crops = _unit_data()
    crops_dir = tmp_path / "faces"
    write_cache(crops_dir, frames, crops)
    (crops_dir / cache.CONFIG_FILE).unlink()
    cache.write_config(crops_dir, {"crop_format": "npy", "crop_size": crops.shape[1], "margin": 0.2,
                                   "landmarks": FACE_POINTS})
    for video_id in frames["video_id"].unique():
        n = int((frames["video_id"] == video_id).sum())
        np.save(cache.landmarks_path(crops_dir, video_id), np.repeat(_hull_points(crops.shape[1])[None], n, 0))
    source = CropSource.from_table(frames, crops_dir)
    regions = sbi.face_regions(frames, source, SBIConfig())
    assert regions.box == assumed_box(0.2) and regions.landmarks.shape == (len(frames), FACE_POINTS, 2)
    assert sbi.face_regions(frames, source, SBIConfig(landmarks=False)).landmarks is None
    result = run_oof(frames, source, LEARNERS, {"meso4": SBI_TRAIN}, tmp_path / "units", CROPS_KEY, progress=False)
    preds = result.frame_preds
    assert len(preds) == len(frames) and np.isfinite(preds["logit"]).all()
    assert {r.info["train_config"]["target"] for r in result.units} == {"self_blended"}


def test_fit_is_reproducible_and_predicts_like_any_learner():
    frames, crops = _unit_data()
    labels, groups = frames["label"].fillna(0).to_numpy(int), frames["group"].to_numpy()
    weights = []
    for _ in range(2):
        seed_everything(0)
        model = build_learner(LEARNERS["meso4"])
        fit(model, crops, labels, groups, SBI_TRAIN, progress=False)
        weights.append(predict_logits(model, crops[:6], SBI_TRAIN))
    np.testing.assert_array_equal(*weights)
    assert np.isfinite(weights[0]).all()


# ---------------------------------------------------------------- the packaged detector


@pytest.mark.slow
def test_the_packaged_detector_scores_with_a_self_blended_learner(tmp_path, monkeypatch):
    """oof.py + stack.py with a self-blended learner beside a supervised one: the detector packages
    it (a config and checkpoints: self-blending only changes training) and reproduces the submission."""
    from tiny_runs import tiny_oof, tiny_stack

    root = generate_corpus(tmp_path / "corpus", SynthConfig.tiny(n_originals=4), progress=False)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    extra = ("select=[meso4, meso4_sbi]", "learners.meso4_sbi={name: meso4, input_size: 32}",
             "train_overrides.meso4_sbi={target: self_blended}", "faces.n_frames=3", "train.epochs=1")
    run = tiny_oof([root], tmp_path / "work", uri, extra)
    assert set(run.frame_preds["learner"]) == {"meso4", "meso4_sbi"}
    result = tiny_stack(run, tmp_path / "stack", uri, ("sweep.baselines=false",))  # a stack of both is picked
    assert result.detector_uri, result.detector_note
    submission = pd.read_csv(tmp_path / "stack" / "submission.csv")
    mlflow.set_tracking_uri(uri)
    monkeypatch.setenv(ALLOWED_ROOTS_ENV, str(root))
    model = mlflow.pyfunc.load_model(result.detector_uri)
    assert "meso4_sbi" in model.unwrap_python_model().detector.spec.learners
    out = model.predict(pd.DataFrame({"path": [str(root / f) for f in submission["filename"]]}))
    np.testing.assert_allclose(out["p_fake"].to_numpy(), submission["label"].to_numpy(), rtol=0, atol=ATOL)
