"""Input views: what each filter keeps and removes, and that fit and predict both apply it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from base_learners.registry import LearnerConfig, build_learner
from base_learners.train import TrainConfig, fit, predict_logits, seed_everything
from base_learners.views import CHROMA_GAIN, GAUSS_TRUNCATE, HIGHPASS_GAIN, HIGHPASS_MID, SRM_GAIN, VIEWS, YCBCR, build_view, gaussian_kernel

SIZE = 32


def faces(n: int = 6, seed: int = 0) -> np.ndarray:
    """uint8 crops with texture, kept away from 0 and 255 so offsets below do not saturate."""
    rng = np.random.default_rng(seed)
    return rng.integers(60, 160, size=(n, SIZE, SIZE, 3), dtype=np.uint8)


def as_input(crops: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0


@pytest.mark.parametrize("sigma", [0.8, 1.5, 3.0])
def test_highpass_matches_opencv_blur(sigma):
    x = as_input(faces(2))
    out = build_view("highpass", sigma)(x).numpy()
    k = 2 * int(np.ceil(GAUSS_TRUNCATE * sigma)) + 1
    for i in range(len(x)):
        img = x[i].permute(1, 2, 0).numpy()
        blur = cv2.GaussianBlur(img, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)
        want = np.clip(HIGHPASS_MID + HIGHPASS_GAIN * (img - blur), 0, 1)
        np.testing.assert_allclose(out[i].transpose(1, 2, 0), want, atol=1e-5)


def test_highpass_removes_colour_and_brightness_offsets():
    """What the view is for: a skin tone or lighting shift (smooth) does not reach the network."""
    x = as_input(faces(3))
    tint = torch.tensor([0.08, -0.05, 0.03]).view(1, 3, 1, 1)
    view = build_view("highpass", 1.5)
    torch.testing.assert_close(view(x + tint), view(x), atol=1e-5, rtol=0)
    assert not torch.allclose(view(x), torch.full_like(x, HIGHPASS_MID))  # texture survives


def test_gray_drops_colour_keeps_luma():
    x = as_input(faces(2))
    y = build_view("gray")(x)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(y[:, 0], luma)
    assert torch.equal(build_view("rgb")(x), x)


def test_view_config_errors():
    with pytest.raises(KeyError, match="valid: chroma, delta, fft, gray, highpass, rgb, srm"):
        build_learner(LearnerConfig("meso4", input_size=SIZE, view="sobel"))
    with pytest.raises(ValueError, match="view_sigma"):
        build_learner(LearnerConfig("meso4", input_size=SIZE, view="highpass", view_sigma=0.0))
    with pytest.raises(ValueError, match="too small"):
        build_view("highpass", 4.0)(torch.zeros(1, 3, 8, 8))
    assert VIEWS.names() == ["chroma", "delta", "fft", "gray", "highpass", "rgb", "srm"]
    assert abs(float(gaussian_kernel(1.0).sum()) - 1.0) < 1e-6


def test_checkpoints_do_not_depend_on_the_view():
    """Views hold no state-dict entries: a checkpoint loads into the same learner with any view."""
    keys = {v: set(build_learner(LearnerConfig("meso4", input_size=SIZE, view=v)).state_dict())
            for v in VIEWS.names()}
    assert all(k == keys["rgb"] for k in keys.values())


def test_fit_and_predict_see_the_view():
    """A highpass learner's logits ignore a uniform brightness offset of the crops (the plain RGB
    learner's do not), and training batches pass through the same view."""
    crops = faces(8)
    brighter = crops + np.uint8(20)
    cfg = TrainConfig(device="cpu", predict_batch_size=4)
    seed_everything(0)
    hp = build_learner(LearnerConfig("meso4", input_size=SIZE, view="highpass", view_sigma=1.5)).eval()
    np.testing.assert_allclose(predict_logits(hp, brighter, cfg), predict_logits(hp, crops, cfg), atol=1e-4)
    seed_everything(0)
    rgb = build_learner(LearnerConfig("meso4", input_size=SIZE)).eval()
    assert not np.allclose(predict_logits(rgb, brighter, cfg), predict_logits(rgb, crops, cfg), atol=1e-4)

    seen = []  # (is the model training?, batch shape) at each call of the view
    real = hp.input_view.forward
    hp.input_view.forward = lambda x: seen.append((hp.training, tuple(x.shape[1:]))) or real(x)
    labels = np.array([0, 1] * 4)
    fit(hp, crops, labels, np.arange(8) // 2, TrainConfig(epochs=1, batch_size=4, device="cpu"),
        progress=False)
    assert (True, (3, SIZE, SIZE)) in seen  # optimisation steps, not only the inner validation


def test_chroma_keeps_luma_and_scales_colour_differences():
    x = as_input(faces(2))
    y = build_view("chroma")(x)
    m = torch.tensor(YCBCR)
    ycc = torch.einsum("oc,bchw->bohw", m, x)
    torch.testing.assert_close(y[:, 0], ycc[:, 0])
    torch.testing.assert_close(y[:, 1:], (HIGHPASS_MID + CHROMA_GAIN * ycc[:, 1:]).clamp(0, 1))
    grey = x.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)  # no colour: Cb = Cr = 0
    torch.testing.assert_close(build_view("chroma")(grey)[:, 1:], torch.full_like(grey[:, 1:], HIGHPASS_MID),
                               atol=1e-5, rtol=0)


def test_srm_ignores_smooth_shading_and_sees_pixel_noise():
    """Every SRM kernel predicts a linear ramp exactly, so shading gives mid-grey away from the
    (reflected, hence kinked) border; a one-pixel spike reaches all three channels (the 2nd-order
    one by -2 / 2 x SRM_GAIN x the spike)."""
    ramp = torch.linspace(0.2, 0.6, SIZE).view(1, 1, 1, SIZE).expand(1, 3, SIZE, SIZE).contiguous()
    view = build_view("srm")
    inner = (Ellipsis, slice(2, -2), slice(2, -2))  # beyond the 5x5 kernels' reach of the border
    torch.testing.assert_close(view(ramp)[inner], torch.full_like(ramp[inner], HIGHPASS_MID), atol=1e-5, rtol=0)
    spiked = ramp.clone()
    spiked[..., SIZE // 2, SIZE // 2] += 0.01
    out = view(spiked)
    centre = out[0, :, SIZE // 2, SIZE // 2]
    assert (centre < HIGHPASS_MID - 1e-3).all()  # the spike's residual is negative (centre tap < 0)
    assert abs(float(centre[0]) - (HIGHPASS_MID - SRM_GAIN * 0.01)) < 1e-4
    assert out.min() >= 0 and out.max() <= 1


def test_fft_view_is_shift_and_brightness_invariant_and_sees_frequency():
    x = as_input(faces(2))
    view = build_view("fft")
    base = view(x)
    torch.testing.assert_close(view(torch.roll(x, shifts=(3, 5), dims=(-2, -1))), base, atol=1e-3, rtol=0)
    torch.testing.assert_close(view(x + 0.1), base, atol=1e-3, rtol=0)  # a brightness offset
    smooth = torch.from_numpy(np.stack([cv2.GaussianBlur(img, (0, 0), 2.0)
                                        for img in x.permute(0, 2, 3, 1).numpy()])).permute(0, 3, 1, 2)
    edge = (slice(None), 0, 0, slice(None))  # the top row of the centred spectrum: highest frequencies
    assert float(view(smooth)[edge].mean()) < float(base[edge].mean())  # blur removes them
