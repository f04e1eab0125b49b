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
from collections.abc import Callable

import numpy as np
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


# ---------------------------------------------------------------- views for real faces (issue 18)
# A stack feeds on learners whose errors differ; on real DFDC crops the MesoNets and tiny timm
# nets all read the same pixels and made nearly the same errors (within-class error correlation
# ~0.8). These views show a learner different evidence: the colour-difference planes (a swap is
# blended into another person's skin, so chroma seams and tone mismatches survive where luma
# texture is smoothed away), steganalysis residuals (SRM: the noise left after predicting each
# pixel from its neighbours, which a re-synthesised face does not share with the rest of the
# frame), and the image's amplitude spectrum (up-sampling by a generator leaves periodic peaks and a
# high-frequency deficit, Durall et al. 2020; Frank et al. 2020).
# Measured on dfdc-faces-dev (13,642 real crops, 3 grouped folds, meso4 at 48 px unless said; video
# log loss / AUC; constant prior 0.605): highpass 0.517 / 0.756 (central 75 %, 16 epochs), rgb
# 0.537 / 0.719 (whole crop, 64 px, 16 epochs), srm 0.545 / 0.714 (central 75 %), chroma 0.543 /
# 0.708 (whole crop), fft 0.578 / 0.643 (whole crop; 12 epochs each). Within-class error
# correlation with the highpass learner: srm 0.58, rgb 0.49, chroma 0.48, fft 0.35; chroma
# against rgb 0.74 (the same pixels, mostly the same mistakes).

YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))  # JPEG
CHROMA_GAIN = 3.0  # face Cb/Cr lie within about +-0.1 of neutral (Cr of skin ~ +0.06): spread them over the input range
SRM_GAIN = 8.0  # residuals of a smooth face are mostly within +-0.03 of zero
# three classic SRM kernels (Fridrich & Kodovsky 2012, as in RGB-N / Zhou et al. 2018), each
# normalised so it predicts a smooth patch exactly (taps sum to zero) with unit centre weight
SRM_KERNELS = (
    ((0, 0, 0, 0, 0), (0, 0, 0, 0, 0), (0, 1, -2, 1, 0), (0, 0, 0, 0, 0), (0, 0, 0, 0, 0)),  # 2nd order
    ((0, 0, 0, 0, 0), (0, -1, 2, -1, 0), (0, 2, -4, 2, 0), (0, -1, 2, -1, 0), (0, 0, 0, 0, 0)),  # 3x3 square
    ((-1, 2, -2, 2, -1), (2, -6, 8, -6, 2), (-2, 8, -12, 8, -2), (2, -6, 8, -6, 2), (-1, 2, -2, 2, -1)),  # KV
)
SRM_NORMS = (2.0, 4.0, 12.0)
FFT_EPS = 1e-3  # floor inside the log of the amplitude: the removed mean (DC ~ 1e-7) sits at one fixed value
FFT_SPREAD = 0.25  # a standardised log-amplitude of +-2 sd maps to [0, 1]


def _ycbcr(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> Y in [0, 1], Cb and Cr centred on 0 (range +-0.5)."""
    m = torch.tensor(YCBCR, dtype=x.dtype, device=x.device)
    return torch.einsum("oc,bchw->bohw", m, x)


@VIEWS.register("chroma")
class ChromaView(nn.Module):
    """Channels: luma, and the two colour differences Cb, Cr amplified by CHROMA_GAIN around
    mid-grey. Brightness alone moves only the first channel; a tone mismatch between the swapped
    face and its surround is what the other two show."""

    def __init__(self, sigma: float | None = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ycc = _ycbcr(x)
        chroma = (HIGHPASS_MID + CHROMA_GAIN * ycc[:, 1:]).clamp(0.0, 1.0)
        return torch.cat([ycc[:, :1], chroma], dim=1)


@VIEWS.register("srm")
class SRMView(nn.Module):
    """Three SRM noise residuals of the luma (SRM_KERNELS), each mid-grey + SRM_GAIN x residual,
    clamped to [0, 1]. Borders reflect. No colour and no shading reach the network: only how each
    pixel departs from its neighbourhood's prediction."""

    def __init__(self, sigma: float | None = None):
        super().__init__()
        k = torch.tensor(SRM_KERNELS, dtype=torch.float32) / torch.tensor(SRM_NORMS).view(-1, 1, 1)
        self.register_buffer("kernels", k.unsqueeze(1), persistent=False)  # (3, 1, 5, 5)
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.kernels.shape[-1] // 2
        y = (x * self.luma.to(x.dtype)).sum(dim=1, keepdim=True)
        res = F.conv2d(F.pad(y, (r, r, r, r), mode="reflect"), self.kernels.to(x.dtype))
        return (HIGHPASS_MID + SRM_GAIN * res).clamp_(0.0, 1.0)


@VIEWS.register("fft")
class FFTView(nn.Module):
    """Per YCbCr channel: the centred log-amplitude spectrum, standardised per image and channel
    and mapped to mid-grey +- FFT_SPREAD per standard deviation, clamped to [0, 1].

    Position in the output is frequency, not place on the face: the network sees how much energy
    each frequency band holds (the up-sampling trace) whatever the face looks like. The mean is
    removed first, so brightness does not reach the DC term."""

    def __init__(self, sigma: float | None = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ycc = _ycbcr(x.float())
        ycc = ycc - ycc.mean(dim=(-2, -1), keepdim=True)
        amp = torch.fft.fftshift(torch.fft.fft2(ycc).abs(), dim=(-2, -1))
        logamp = torch.log(amp + FFT_EPS)
        mu = logamp.mean(dim=(-2, -1), keepdim=True)
        sd = logamp.std(dim=(-2, -1), keepdim=True).clamp_min(FFT_EPS)
        return (HIGHPASS_MID + FFT_SPREAD * (logamp - mu) / sd).clamp_(0.0, 1.0).to(x.dtype)


# ---------------------------------------------------------------- a view of two frames (issue 16)
# A swap is re-rendered frame by frame: its position, scale and colour jitter (flicker) and its
# boundary moves against the head, while a real face changes smoothly. A learner that sees only
# what changed between a face and the same track's face in the next frame of the clip reads that
# evidence directly, and none of the still-image texture the frame learners read.
DELTA_GAIN = 4.0  # frame-to-frame changes of a steady face are mostly within +-0.05


@VIEWS.register("delta")
class DeltaView(nn.Module):
    """Mid-grey + DELTA_GAIN x (next frame's crop - this crop), per channel, clamped to [0, 1].

    Input: (B, 6, S, S), this crop's RGB and then the next one's (base_learners.inputs gives such
    pairs to a learner whose view reads FRAMES = 2). A face that did not change gives exactly
    mid-grey."""

    FRAMES = 2

    def __init__(self, sigma: float | None = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 2 * len(LUMA):
            raise ValueError(f"the delta view reads two RGB crops stacked on channels (6); got {x.shape[1]}")
        now, later = x[:, :3], x[:, 3:]
        return (HIGHPASS_MID + DELTA_GAIN * (later - now)).clamp_(0.0, 1.0)


def view_frames(name: str) -> int:
    """How many consecutive crops of a track the view `name` reads (1 for every view but delta)."""
    return int(getattr(VIEWS.get(name), "FRAMES", 1))


def build_view(name: str, sigma: float | None = None) -> nn.Module:
    """The view registered as `name` (unknown names list the valid ones)."""
    return VIEWS.get(name)(sigma=sigma)


# ---------------------------------------------------------------- aligned faces (issue 27)
# A face detector's box sits where the detector put it: the face is tilted as the head was, and
# its scale and centre vary with the detector. dlib's face-recognition ResNet was trained on chips
# aligned from 5 landmarks (eye corners and nose rotated level and scaled to a fixed place,
# dlib.get_face_chip), so that is the input its pretrained features expect; for other learners it
# removes pose variation that is not evidence. Alignment needs each crop's landmarks, which a
# per-pixel view cannot see, so it happens where crops are read: the learner option `align`
# (registry.LearnerConfig) wraps its crops in `AlignedCrops` (`view_crops`, called by
# base_learners.train for training and prediction alike), before `crop_frac`, augmentation and the
# view.
ALIGN_PADDING = 0.25  # dlib's default margin around the aligned face (what its ResNet was trained on)


class AlignedCrops:
    """Face crops aligned by their landmarks, read on demand: an array-like like
    features.faces.source.CropSource. Item i is `crops[i]` warped so that `landmarks[i]` (crop
    pixels, 5 or 68 points) land on dlib's mean face, as a (size, size, 3) uint8 chip."""

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, crops, landmarks: np.ndarray, size: int, padding: float = ALIGN_PADDING):
        if len(crops) != len(landmarks):
            raise ValueError(f"{len(crops)} crops but {len(landmarks)} landmark rows")
        self.crops, self.landmarks, self.size, self.padding = crops, np.asarray(landmarks), int(size), padding

    def __len__(self) -> int:
        return len(self.landmarks)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.size, self.size, 3)

    def __getitem__(self, key):
        """`aligned[i]`: chip i; `aligned[rows]` (ints, mask, slice): the aligned crops of those rows."""
        if isinstance(key, (int, np.integer)):
            from features.faces.dlib_models import align_chip  # dlib: only for learners that align

            return align_chip(np.asarray(self.crops[int(key)]), self.landmarks[int(key)], self.size, self.padding)
        rows = np.arange(len(self))[key]
        return AlignedCrops(self.crops[rows], self.landmarks[rows], self.size, self.padding)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.stack([self[i] for i in range(len(self))]) if len(self) else np.zeros(self.shape, np.uint8)
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"AlignedCrops({len(self)} chips of {self.size} px over {self.crops!r})"


def source_landmarks(crops) -> np.ndarray:
    """(N, P, 2) landmarks of a features.faces.source.CropSource's rows, from its face cache (the
    `<video>.landmarks.npy` files beside the crops, features.faces.cache)."""
    from features.faces import cache
    from features.faces.source import CropSource

    if not isinstance(crops, CropSource):
        raise ValueError(f"align: the landmarks come from the face cache, so the crops must be a "
                         f"features.faces.source.CropSource (or AlignedCrops); got {type(crops).__name__}")
    points = cache.landmark_points(crops.crops_dir)
    if not points:
        raise ValueError(f"align: the face cache {crops.crops_dir} holds no landmarks; set faces.landmarks to 5 "
                         "(or 68) and run the face stage again")
    suffix = cache.CROP_STORES.get(crops.crop_format).suffix
    out = np.empty((len(crops), points, 2), np.float32)
    video, crop = crops._video, crops._crop  # the source's rows: video number, crop number in its file
    order = np.argsort(video, kind="stable")
    videos, starts = np.unique(video[order], return_index=True)
    for v, rows in zip(videos, np.split(order, starts[1:])):  # each video's file read once
        per_video = np.load(crops.crops_dir / (crops._files[v][: -len(suffix)] + cache.LANDMARKS_SUFFIX))
        out[rows] = per_video[crop[rows]]
    return out


def view_crops(model: nn.Module, crops):
    """The crops as the learner reads them: aligned by their landmarks when it was built with
    `align` (AlignedCrops at its input size), otherwise `crops` unchanged."""
    if not getattr(model, "align", False) or isinstance(crops, AlignedCrops):
        return crops
    return AlignedCrops(crops, source_landmarks(crops), int(model.input_size))
