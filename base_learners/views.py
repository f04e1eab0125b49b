"""Input views: a fixed filter between the face pixels (floats in [0, 1]) and a learner's network.

Why: a face swap's evidence on the embedded corpus, as in real DFDC fakes, is local texture (a
blending seam, a face rendered at lower resolution and upscaled); the colour and low-frequency
shading of a face mostly say who the person is and how they are lit. A from-scratch CNN trained
for a few CPU epochs on a few hundred identities spends its capacity on those identity cues first.
Showing it only the high-pass residual (the face minus its Gaussian blur) removes them: on the demo
corpus (the demo profile's oof.py, 3 grouped folds, video log loss of the mean frame probability,
RGB -> high-pass) meso4 0.209 -> 0.161 (sigma 0.8), mesoinception4 0.206 -> 0.188, resnext_tiny
0.253 -> 0.200, xception_tiny 0.284 -> 0.174, tinynet_e 0.371 -> 0.290 (sigma 1.5); a grey view
helped meso4 less (0.176) and hurt mesoinception4 (0.218). Different views and sigmas also vary
the errors the stack combines.

A view is an `nn.Module` without trainable parameters or state-dict entries (its kernels are
non-persistent buffers), attached by `registry.build_learner` as `model.input_view`, so a
checkpoint loads whatever the view, and training and prediction apply the same filter.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from features.common import Registry

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights, as OpenCV's RGB -> grey
HIGHPASS_GAIN = 2.0  # the residual of a face is mostly within +-0.1: spread it over the input range
HIGHPASS_MID = 0.5  # zero residual maps to mid-grey, so the usual input normalisation still fits
GAUSS_TRUNCATE = 3.0  # kernel radius in sigmas (the Gaussian beyond holds < 0.3 % of its mass)

VIEWS: Registry[Callable[..., nn.Module]] = Registry("view")


@VIEWS.register("rgb")
class RGBView(nn.Module):
    """The face as decoded: every cue, colour included (the default)."""

    def __init__(self, sigma: float | None = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@VIEWS.register("gray")
class GrayView(nn.Module):
    """Luma repeated on the three channels: texture and shading without colour."""

    def __init__(self, sigma: float | None = None):
        super().__init__()
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x * self.luma.to(x.dtype)).sum(dim=1, keepdim=True)
        return y.expand(-1, 3, -1, -1)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """The normalised 1-D Gaussian taps, radius ceil(GAUSS_TRUNCATE * sigma)."""
    radius = max(1, math.ceil(GAUSS_TRUNCATE * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


@VIEWS.register("highpass")
class HighPassView(nn.Module):
    """Per channel: mid-grey + HIGHPASS_GAIN x (face - Gaussian blur of the face), clamped to [0, 1].

    `sigma` (model-input pixels) sets the finest scale removed: small keeps only pixel-level
    texture (resolution, compression), larger keeps seams and edges too. Borders reflect, as
    OpenCV's GaussianBlur does by default.
    """

    def __init__(self, sigma: float | None = None):
        super().__init__()
        if sigma is None or not sigma > 0:
            raise ValueError(f"the highpass view needs view_sigma > 0, got {sigma}")
        self.sigma = float(sigma)
        self.register_buffer("taps", gaussian_kernel(self.sigma), persistent=False)

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        c, r = x.shape[1], (len(self.taps) - 1) // 2
        if min(x.shape[-2:]) <= r:
            raise ValueError(f"highpass view: a {tuple(x.shape[-2:])} input is too small for sigma "
                             f"{self.sigma} (kernel radius {r}); lower view_sigma")
        taps = self.taps.to(x.dtype)
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), taps.view(1, 1, 1, -1).expand(c, 1, 1, -1),
                     groups=c)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), taps.view(1, 1, -1, 1).expand(c, 1, -1, 1),
                        groups=c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (HIGHPASS_MID + HIGHPASS_GAIN * (x - self.blur(x))).clamp_(0.0, 1.0)


def build_view(name: str, sigma: float | None = None) -> nn.Module:
    """The view registered as `name` (unknown names list the valid ones)."""
    return VIEWS.get(name)(sigma=sigma)
