"""Training loop: it learns, it is reproducible, early stopping sees only the inner split."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import base_learners.train as train_mod
from base_learners.augment import AugmentConfig, augment, center_crop, resize
from base_learners.registry import LearnerConfig, build_learner
from base_learners.timm_learners import LIGHT_VARIANTS
from base_learners.train import TrainConfig, fit, inner_split, predict_logits, seed_everything
from features.common import ConfigError

CROP = 40  # crops as they come from the face cache (tiny)
SIZE = 32  # model input size: crops get resized inside fit/predict
P_FIELDS = [f.name for f in dataclasses.fields(AugmentConfig) if f.name.startswith("p_")]
NO_AUG = AugmentConfig(**{name: 0.0 for name in P_FIELDS})


def toy(n: int = 32, seed: int = 0, fake_frac: float = 0.5):
    """Noise crops; FAKE ones carry a bright square (easily separable). Two crops per group."""
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 120, size=(n, CROP, CROP, 3), dtype=np.uint8)
    labels = (rng.random(n) < fake_frac).astype(np.int64)
    labels[:2] = [0, 1]
    crops[labels == 1, 10:30, 10:30] = 250
    return crops, labels, np.arange(n) // 2


def learner(name: str = "meso4", seed: int = 0):
    seed_everything(seed)
    return build_learner(LearnerConfig(name, LIGHT_VARIANTS.get(name), input_size=SIZE))


def log_loss(y, z):
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def test_learns_separable_toy():
    crops, labels, groups = toy()
    model = learner()
    cfg = TrainConfig(epochs=8, batch_size=8, lr=1e-2, augment=NO_AUG, device="cpu")
    before = log_loss(labels, predict_logits(model, crops, cfg))
    seen = []
    res = fit(model, crops, labels, groups, cfg, on_epoch=lambda e, _: seen.append(e),
              progress=False)
    after = log_loss(labels, predict_logits(res.model, crops, cfg))
    assert after < before and after < math.log(2)
    assert seen == list(range(8)) and [h["epoch"] for h in res.history] == seen
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert set(res.history[0]) >= {"epoch", "train_loss", "inner_val_loss", "lr"}
    assert res.history[0]["inner_val_loss"] is None and res.inner_val_idx is None


@pytest.mark.parametrize("name", ["meso4", "efficientnet"])
def test_cpu_determinism(name):
    crops, labels, groups = toy(16)
    cfg = TrainConfig(epochs=1, batch_size=8, device="cpu")  # default augmentation on

    def run(seed):
        seeded = dataclasses.replace(cfg, seed=seed)
        res = fit(learner(name, seed), crops, labels, groups, seeded, progress=False)
        return res.model.state_dict(), predict_logits(res.model, crops, cfg)

    (w1, p1), (w2, p2), (_, p3) = run(0), run(0), run(1)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert np.array_equal(p1, p2) and p1.dtype == np.float32 and p1.shape == (16,)
    assert not np.array_equal(p1, p3)


def test_same_result_with_worker_processes():
    """Batch order and augmentation depend on (seed, epoch, row), not on the worker layout."""
    crops, labels, groups = toy(16)
    preds = []
    for workers in (0, 1):
        cfg = TrainConfig(epochs=1, batch_size=8, balance="sampler", num_workers=workers,
                          device="cpu")
        res = fit(learner(), crops, labels, groups, cfg, progress=False)
        preds.append(predict_logits(res.model, crops, cfg))
    assert np.array_equal(*preds)


def test_early_stopping_uses_inner_groups_only(monkeypatch):
    crops, labels, groups = toy(32)
    trained_on = []
    real_loader = train_mod._loader

    def spy(c, *args, **kwargs):
        trained_on.append(len(c))
        return real_loader(c, *args, **kwargs)

    monkeypatch.setattr(train_mod, "_loader", spy)
    cfg = TrainConfig(epochs=4, batch_size=8, augment=NO_AUG, inner_val_frac=0.25,
                      early_stopping_patience=1, device="cpu")
    res = fit(learner(), crops, labels, groups, cfg, progress=False)
    va = res.inner_val_idx
    tr = np.setdiff1d(np.arange(32), va)
    assert len(va) > 0 and not set(groups[va]) & set(groups[tr]), "groups must stay whole"
    assert trained_on == [len(tr)]
    losses = [h["inner_val_loss"] for h in res.history]
    assert res.best_epoch == int(np.argmin(losses))
    # the returned weights are the best epoch's: their inner-val loss is the recorded minimum
    restored = log_loss(labels[va], predict_logits(res.model, crops[va], cfg))
    assert restored == pytest.approx(min(losses), abs=1e-5)
    assert np.array_equal(inner_split(groups, 0.25, cfg.seed)[1], va)


def test_early_stopping_needs_inner_split():
    crops, labels, groups = toy(8)
    with pytest.raises(ConfigError, match="inner_val_frac"):
        cfg = TrainConfig(early_stopping_patience=2)
        fit(learner(), crops, labels, groups, cfg, progress=False)


@pytest.mark.parametrize("balance", ["pos_weight", "sampler"])
def test_balance_modes_and_prior_correction(balance):
    crops, labels, groups = toy(20, fake_frac=0.8)
    cfg = TrainConfig(epochs=1, batch_size=8, balance=balance, device="cpu")
    res = fit(learner(), crops, labels, groups, cfg, progress=False)
    n_fake = labels.sum()
    assert res.logit_offset == pytest.approx(-math.log((len(labels) - n_fake) / n_fake))
    assert float(res.model.state_dict()["logit_offset"]) == pytest.approx(res.logit_offset)
    assert np.isfinite(res.history[0]["train_loss"])


def test_augment_shapes_and_noop():
    crops, _, _ = toy(4)
    rng = np.random.default_rng(0)
    strong = AugmentConfig(**{name: 1.0 for name in P_FIELDS})
    for img in crops:
        out = augment(img, SIZE, AugmentConfig(), rng)
        assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
        assert np.array_equal(augment(img, SIZE, NO_AUG, rng), resize(img, SIZE))
        assert not np.array_equal(augment(img, SIZE, strong, rng), resize(img, SIZE))


def test_predict_tta_flip_is_mean_of_mirrors():
    crops, _, _ = toy(6)
    model = learner().eval()
    plain = TrainConfig(device="cpu", predict_batch_size=4)
    tta = predict_logits(model, crops, dataclasses.replace(plain, tta_flip=True))
    mirrored = predict_logits(model, np.ascontiguousarray(crops[:, :, ::-1]), plain)
    np.testing.assert_allclose(tta, (predict_logits(model, crops, plain) + mirrored) / 2, atol=1e-5)


def test_bad_inputs_are_named():
    crops, labels, groups = toy(8)
    with pytest.raises(ValueError, match="uint8"):
        predict_logits(learner(), crops.astype(np.float32), TrainConfig())
    with pytest.raises(ValueError, match="differ in length"):
        fit(learner(), crops, labels[:-1], groups, TrainConfig(), progress=False)
    with pytest.raises(ConfigError, match="balance"):
        fit(learner(), crops, labels, groups, TrainConfig(balance="oversample"), progress=False)


def test_learner_view_is_the_central_crop():
    """crop_frac: training and prediction see only the central part of each crop, then resized."""
    crops, labels, groups = toy(8)
    img = crops[0]
    assert np.array_equal(center_crop(img, 0.5), img[10:30, 10:30]) and center_crop(img, 1.0) is img
    seed_everything(0)
    tight = build_learner(LearnerConfig("meso4", input_size=SIZE, crop_frac=0.5)).eval()
    cfg = TrainConfig(device="cpu", predict_batch_size=4)
    framed = crops.copy()
    framed[:, :10], framed[:, 30:], framed[:, :, :10], framed[:, :, 30:] = 0, 255, 7, 99  # outside the view
    viewed = predict_logits(tight, framed, cfg)
    np.testing.assert_array_equal(viewed, predict_logits(tight, crops, cfg))
    inner = np.ascontiguousarray(crops[:, 10:30, 10:30])  # the same view, cut beforehand
    tight.crop_frac = 1.0
    np.testing.assert_array_equal(predict_logits(tight, inner, cfg), viewed)
    seen = []
    real_augment = train_mod.augment
    monkey = pytest.MonkeyPatch()
    monkey.setattr(train_mod, "augment", lambda im, *a: seen.append(im.shape) or real_augment(im, *a))
    try:
        tight.crop_frac = 0.5
        fit(tight, crops, labels, groups, TrainConfig(epochs=1, batch_size=4, device="cpu"), progress=False)
    finally:
        monkey.undo()
    assert seen and set(seen) == {(CROP // 2, CROP // 2, 3)}


def test_crop_frac_is_validated():
    with pytest.raises(ValueError, match="crop_frac"):
        build_learner(LearnerConfig("meso4", input_size=SIZE, crop_frac=1.5))
