"""The spectrum learner: ring geometry, what its features respond to, and the registry contract."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from base_learners.registry import LearnerConfig, build_learner
from base_learners.spectral import SpectrumMLP, ring_index
from base_learners.train import TrainConfig, fit, predict_logits, seed_everything

SIZE = 32


def test_rings_cover_the_spectrum_up_to_nyquist():
    rings, n = ring_index(SIZE)
    assert n == SIZE // 2 and rings.shape == (SIZE * SIZE,)
    assert int(rings.min()) == 0 and int(rings.max()) == n - 1
    centre = (SIZE // 2) * SIZE + SIZE // 2  # the DC coefficient after fftshift
    assert int(rings[centre]) == 0 and (rings == 0).sum() == 1
    assert (torch.bincount(rings, minlength=n) > 0).all()  # no empty ring (no division by zero)


def test_profile_loses_high_frequencies_when_blurred():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, size=(4, SIZE, SIZE, 3), dtype=np.uint8)
    blurred = np.stack([cv2.GaussianBlur(c, (0, 0), 1.5) for c in crops])
    model = SpectrumMLP(input_size=SIZE)
    as_x = lambda c: torch.from_numpy(c).permute(0, 3, 1, 2).float() / 255.0
    p, q = model.profile(as_x(crops)), model.profile(as_x(blurred))
    n = SIZE // 2
    luma_p, luma_q = p[:, :n], q[:, :n]
    assert (luma_q[:, -4:] < luma_p[:, -4:] - 1.0).all()  # outer rings: log power falls by > 1
    assert p.shape == (4, 3 * n) and torch.isfinite(p).all()


def test_registered_and_trains_through_the_common_contract():
    seed_everything(0)
    model = build_learner(LearnerConfig("spectrum", input_size=SIZE))
    assert model.learner_name == "spectrum" and model.input_size == SIZE
    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 256, size=(16, SIZE, SIZE, 3), dtype=np.uint8)
    soft = np.stack([cv2.GaussianBlur(c, (0, 0), 1.5) for c in sharp])  # the "fakes": no fine detail
    crops, labels = np.concatenate([sharp, soft]), np.array([0] * 16 + [1] * 16)
    cfg = TrainConfig(epochs=30, batch_size=8, lr=1e-2, device="cpu")
    fit(model, crops, labels, np.arange(32), cfg, progress=False)
    logits = predict_logits(model, crops, cfg)
    assert logits[labels == 1].min() > logits[labels == 0].max()  # an easy spectral cue is learnt
    with pytest.raises(ValueError, match="pretrained"):
        build_learner(LearnerConfig("spectrum", pretrained=True))
    with pytest.raises(ValueError, match="input_size"):
        build_learner(LearnerConfig("spectrum", input_size=8))
