"""Self-blended images (SBI; Shiohara & Yamasaki, CVPR 2022): pseudo-fakes made from real faces only.

Why: a learner trained on one generator's fakes learns that generator; on another dataset it loses
10-30 AUC points. A real face blended with a slightly transformed copy of ITSELF, inside a deformed
and blurred face mask, carries only what every face swap leaves behind (a blending boundary, a colour
and sharpness mismatch between inner face and surroundings) and no identity or generator cue. A
learner trained to tell reals from such blends needs no fake at all, and errs differently from the
supervised learners by construction, which is what a stack feeds on.

`train.target: self_blended` (base_learners.train) makes any frame learner train this way: `fit`
drops the training folds' fakes (never read), and each batch holds real crops (label 0) and blends of
those same crops (label 1), `SBIConfig.blend_ratio` of it blended. Prediction is unchanged: a unit
still predicts its held-out fold's real and fake faces, so its out-of-fold rows join the stack like
any learner's (docs/design.md rule 2 holds because the blends are made from the training rows only).

One blend, per sample (`self_blend`): the face region is the convex hull of the crop's 68 landmarks
when the face cache holds them (`faces.landmarks: 68`, features.faces.cache), otherwise an ellipse in
the face box, which every crop has at the same place (a square of side 1 / (1 + 2 * faces.margin)
of the crop, centred: features.faces.detect crops `max(w, h) * (1 + 2 * margin)` around it; the
rare crop shifted at a frame edge is off by that shift). The region is shrunk about its centre,
elastically warped, cut back to the region and eroded by the blur's reach, then blurred, so the mask
stays inside the face and fades out softly. The source (the crop scaled, shifted and put through a
frequency change: sharpen, blur, down-up-scale or JPEG) is pasted onto the target (the crop) through
the mask times a blend ratio; colour jitter (hue, brightness, contrast, RGB shift) goes to one side.

Determinism: a blend is a pure function of (seed, epoch, row, copy): the same in any worker, batch
order or worker count, like base_learners.augment's draws.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
from torch.utils.data import Sampler

from base_learners.augment import PIXEL_MAX, jpeg
from features.common import ConfigError
from features.faces import cache
from features.faces.config import FaceConfig

log = logging.getLogger(__name__)

LABELS, SELF_BLENDED = "labels", "self_blended"
TARGETS = (LABELS, SELF_BLENDED)  # TrainConfig.target: what a learner is trained to separate
FREQUENCY_OPS = ("sharpen", "blur", "downscale", "jpeg")
HULL_MIN_POINTS = 17  # a hull needs the jaw line (68-point landmarks); 5 points outline no face
TRAIN_STREAM, VAL_STREAM, ORDER_STREAM = 0, 1, 2  # independent draws for training, inner validation, batches
EDGE_SIGMAS = 2.0  # the mask is eroded by this many blur sigmas: its soft edge fades out inside the face
SHARPEN_SIGMA = 1.0  # px: the blur an unsharp mask subtracts
HUE_HALF_DEGREES = 2.0  # OpenCV's 8-bit hue runs 0..179: two degrees per unit
HUE_RANGE = 180
MIN_REALS = 2  # a batch of one face cannot train batch norm


@dataclass
class SBIConfig:
    """The self-blending recipe; every range is drawn per sample (uniform unless said otherwise)."""

    blend_ratio: float = 0.5  # share of each training batch that is blended (label 1); SBI: half
    face_margin: float | None = None  # crop margin around the face box; None: the face cache's faces.margin
    landmarks: bool = True  # the 68-landmark hull when the face cache holds landmarks; False: always the ellipse
    ellipse_aspect: float = 0.85  # width / height of the ellipse in the (square) face box: faces are taller
    mask_scale: tuple[float, float] = (0.8, 1.0)  # the region shrunk about its centre by this factor
    warp_grid: int = 4  # elastic warp: random displacements on a grid x grid lattice, smoothly upsampled
    warp_strength: float = 0.04  # largest displacement, as a fraction of the crop side
    mask_blur: tuple[float, float] = (0.01, 0.03)  # Gaussian sigma of the mask edge, fraction of the side
    blend_weights: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # the mask's peak, one drawn (SBI's)
    p_color_source: float = 0.5  # colour jitter goes to the source with this probability, else the target
    hue_shift_deg: float = 4.0  # hue offset in [-x, x] degrees
    brightness: float = 0.1  # factor in [1 - b, 1 + b]
    contrast: float = 0.1  # factor in [1 - c, 1 + c] about the mean
    rgb_shift: float = 20.0  # per-channel offsets in [-x, x] pixel levels
    frequency: tuple[str, ...] = FREQUENCY_OPS  # one drawn per sample, applied to the source
    sharpen_amount: tuple[float, float] = (0.2, 0.5)  # unsharp-mask gain
    blur_sigma: tuple[float, float] = (0.4, 1.2)  # px of the cached crop
    downscale: tuple[float, float] = (0.5, 0.8)  # down by this factor, then back up
    jpeg_quality: tuple[int, int] = (60, 95)
    max_scale: float = 0.05  # the source scaled by a factor in [1 - s, 1 + s] about the crop centre
    max_shift: float = 0.03  # and shifted by up to this fraction of the side on each axis

    def __post_init__(self) -> None:
        checks = {
            "0 < blend_ratio < 1": 0 < self.blend_ratio < 1,
            "face_margin >= 0": self.face_margin is None or self.face_margin >= 0,
            "0 < ellipse_aspect <= 1": 0 < self.ellipse_aspect <= 1,
            "0 < mask_scale[0] <= mask_scale[1] <= 1": 0 < self.mask_scale[0] <= self.mask_scale[1] <= 1,
            "warp_grid >= 2": self.warp_grid >= 2, "warp_strength >= 0": self.warp_strength >= 0,
            "0 <= mask_blur[0] <= mask_blur[1]": 0 <= self.mask_blur[0] <= self.mask_blur[1],
            "blend_weights in (0, 1]": len(self.blend_weights) > 0 and all(0 < w <= 1 for w in self.blend_weights),
            f"frequency in {FREQUENCY_OPS}": set(self.frequency) <= set(FREQUENCY_OPS),
            "1 <= jpeg_quality <= 100": 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100,
            "0 < downscale <= 1": 0 < self.downscale[0] <= self.downscale[1] <= 1,
            "0 <= max_scale < 1": 0 <= self.max_scale < 1, "max_shift >= 0": self.max_shift >= 0,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ConfigError(f"SBIConfig: {', '.join(failed)} violated in {self}")

    def batch_split(self, batch_size: int) -> tuple[int, int]:
        """(reals, blends) of a training batch; both at least one (batch norm needs both classes)."""
        blends = int(round(batch_size * self.blend_ratio))
        if not 1 <= blends < batch_size:
            raise ConfigError(f"sbi.blend_ratio {self.blend_ratio} leaves no real or no blended crop in a "
                              f"batch of {batch_size}")
        return batch_size - blends, blends


# ---------------------------------------------------------------- where the face is


@dataclass
class FaceRegions:
    """Where the face is in each crop: the face box (the same for every crop, as fractions of the side:
    x0, y0, x1, y1) and, when the face cache holds them, (N, P, 2) landmarks in crop pixels."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None = None

    def __getitem__(self, rows) -> FaceRegions:
        return FaceRegions(self.box, None if self.landmarks is None else self.landmarks[rows])

    def points(self, i: int) -> np.ndarray | None:
        """Row i's landmarks for a hull (None: the box's ellipse)."""
        return None if self.landmarks is None else self.landmarks[i]


def assumed_box(margin: float) -> tuple[float, float, float, float]:
    """The face box in a crop cut `max(w, h) * (1 + 2 * margin)` around it: the central square of side
    1 / (1 + 2 * margin) (features.faces.detect.square_box; images.assumed_face_box for face sets)."""
    half = 0.5 / (1.0 + 2.0 * margin)
    return (0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half)


def face_regions(rows: pd.DataFrame, crops, cfg: SBIConfig) -> FaceRegions:
    """The face regions of `rows` (video_id, crop_idx; aligned to `crops`): the face cache's margin and,
    with 68-point landmarks cached, their points. Arrays (no cache) get the default margin's box."""
    crops_dir = getattr(crops, "crops_dir", None)
    fields = cache.read_config(crops_dir) if crops_dir is not None else {}
    margin = cfg.face_margin if cfg.face_margin is not None else float(fields.get("margin", FaceConfig.margin))
    points = cache.landmark_points(crops_dir) if crops_dir is not None else 0
    if cfg.landmarks and points >= HULL_MIN_POINTS:
        return FaceRegions(assumed_box(margin), cache.landmarks_for_rows(rows, crops_dir))
    if cfg.landmarks and points:
        log.info("self-blending: %d-point landmarks outline no face; the face-box ellipse is used", points)
    return FaceRegions(assumed_box(margin))


def default_regions(cfg: SBIConfig) -> FaceRegions:
    """Regions of crops without a face cache behind them: the box of `face_margin` (or FaceConfig's)."""
    return FaceRegions(assumed_box(FaceConfig.margin if cfg.face_margin is None else cfg.face_margin))


# ---------------------------------------------------------------- the mask


def region_mask(size: int, box, points: np.ndarray | None, aspect: float) -> np.ndarray:
    """(size, size) uint8 0/1: the landmarks' convex hull, or an ellipse inscribed in the box."""
    mask = np.zeros((size, size), np.uint8)
    if points is not None:
        hull = cv2.convexHull(np.round(points).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)
        return mask
    x0, y0, x1, y1 = (v * size for v in box)
    axes = (max(1, int(round((x1 - x0) / 2 * aspect))), max(1, int(round((y1 - y0) / 2))))
    centre = (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2)))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, thickness=-1)
    return mask


def _shrink(mask: np.ndarray, scale: float) -> np.ndarray:
    """The region scaled by `scale` about its centroid (nearest: it stays binary)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return mask
    m = cv2.getRotationMatrix2D((float(xs.mean()), float(ys.mean())), 0.0, scale)
    return cv2.warpAffine(mask, m, mask.shape[::-1], flags=cv2.INTER_NEAREST)


def _warp(mask: np.ndarray, cfg: SBIConfig, rng: np.random.Generator) -> np.ndarray:
    """Elastic deformation: smooth random displacements (a coarse random grid, cubic-upsampled)."""
    size = mask.shape[0]
    amp = cfg.warp_strength * size
    grid = rng.uniform(-amp, amp, (2, cfg.warp_grid, cfg.warp_grid)).astype(np.float32)
    dx, dy = (cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC) for g in grid)
    xs, ys = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    return cv2.remap(mask, xs + dx, ys + dy, interpolation=cv2.INTER_NEAREST, borderValue=0)


def blend_mask(size: int, box, points: np.ndarray | None, cfg: SBIConfig, rng: np.random.Generator) -> np.ndarray:
    """(size, size) float32 in [0, 1], zero outside the face region, its peak 1 (before the ratio)."""
    region = region_mask(size, box, points, cfg.ellipse_aspect)
    mask = _warp(_shrink(region, rng.uniform(*cfg.mask_scale)), cfg, rng) & region
    if not mask.any():  # a warp that pushed a tiny region out: the region itself
        mask = region
    sigma = rng.uniform(*cfg.mask_blur) * size
    reach = int(math.ceil(EDGE_SIGMAS * sigma))
    if reach > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
        eroded = cv2.erode(mask, kernel)
        mask = eroded if eroded.any() else mask  # a tiny face keeps its region unblurred-in
    soft = mask.astype(np.float32)
    if sigma > 0:
        soft = cv2.GaussianBlur(soft, (0, 0), sigma) * region  # the tail beyond 2 sigma (< 2.3 %) cut
    peak = soft.max()
    return soft / peak if peak > 0 else soft


# ---------------------------------------------------------------- source and target


def _colour(img: np.ndarray, cfg: SBIConfig, rng: np.random.Generator) -> np.ndarray:
    """Hue offset, brightness and contrast factors and per-channel offsets, clipped to uint8."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    shift = rng.uniform(-cfg.hue_shift_deg, cfg.hue_shift_deg) / HUE_HALF_DEGREES
    hsv[..., 0] = np.mod(hsv[..., 0].astype(np.float32) + shift + 0.5, HUE_RANGE).astype(np.uint8)
    x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
    x *= rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    x += rng.uniform(-cfg.rgb_shift, cfg.rgb_shift, 3).astype(np.float32)
    return np.clip(x + 0.5, 0, PIXEL_MAX).astype(np.uint8)


def _frequency(img: np.ndarray, cfg: SBIConfig, rng: np.random.Generator) -> np.ndarray:
    """One of `cfg.frequency`: the source's sharpness or compression differs from the target's."""
    if not cfg.frequency:
        return img
    op = cfg.frequency[rng.integers(len(cfg.frequency))]
    if op == "sharpen":
        x = img.astype(np.float32)
        x += rng.uniform(*cfg.sharpen_amount) * (x - cv2.GaussianBlur(x, (0, 0), SHARPEN_SIGMA))
        return np.clip(x + 0.5, 0, PIXEL_MAX).astype(np.uint8)
    if op == "blur":
        return cv2.GaussianBlur(img, (0, 0), rng.uniform(*cfg.blur_sigma))
    if op == "downscale":
        size = img.shape[0]
        small = max(1, int(round(size * rng.uniform(*cfg.downscale))))
        down = cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA)
        return cv2.resize(down, (size, size), interpolation=cv2.INTER_LINEAR)
    return jpeg(img, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))


def _scale_shift(img: np.ndarray, cfg: SBIConfig, rng: np.random.Generator) -> np.ndarray:
    """The source slightly rescaled about the centre and shifted: the face no longer lines up."""
    size = img.shape[0]
    m = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), 0.0, rng.uniform(1 - cfg.max_scale, 1 + cfg.max_scale))
    m[:, 2] += rng.uniform(-cfg.max_shift, cfg.max_shift, 2) * size
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def self_blend(crop: np.ndarray, box, points: np.ndarray | None, cfg: SBIConfig,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One real crop (S, S, 3) uint8 -> (its self-blend, uint8; the mask, float32 (S, S) in [0, 1])."""
    source, target = _scale_shift(crop, cfg, rng), crop
    if rng.random() < cfg.p_color_source:
        source = _colour(source, cfg, rng)
    else:
        target = _colour(target, cfg, rng)
    source = _frequency(source, cfg, rng)
    mask = blend_mask(crop.shape[0], box, points, cfg, rng) * float(rng.choice(cfg.blend_weights))
    m = mask[..., None]
    out = source.astype(np.float32) * m + target.astype(np.float32) * (1 - m)
    return np.clip(out + 0.5, 0, PIXEL_MAX).astype(np.uint8), mask


# ---------------------------------------------------------------- what training reads


class BlendedCrops:
    """Real crops and their blends as one array-like (what CropDataset and predict_logits read):
    item j < n is real crop j (label 0); item n * (1 + c) + i is copy c of real i's blend (label 1),
    drawn from (seed, epoch, i, c, stream). `epoch` is set by the training loop before each epoch."""

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, crops, regions: FaceRegions, cfg: SBIConfig, seed: int, copies: int = 1,
                 stream: int = TRAIN_STREAM):
        self.crops, self.regions, self.cfg, self.seed = crops, regions, cfg, int(seed)
        self.copies, self.stream, self.epoch = int(copies), int(stream), 0
        self.n = len(crops)

    def __len__(self) -> int:
        return self.n * (1 + self.copies)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *tuple(self.crops.shape[1:]))

    @property
    def labels(self) -> np.ndarray:
        return np.r_[np.zeros(self.n), np.ones(self.n * self.copies)].astype(np.float32)

    def source(self, j: int) -> tuple[int, int]:
        """(real row, copy) of item j; copy -1 for the real crop itself."""
        return j % self.n, j // self.n - 1

    def blend(self, i: int, copy: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(blend, mask) of real row i's blend copy `copy` at the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, int(i), int(copy), self.stream])
        return self_blend(self.crops[int(i)], self.regions.box, self.regions.points(int(i)), self.cfg, rng)

    def __getitem__(self, j):
        if not isinstance(j, (int, np.integer)):
            raise TypeError("BlendedCrops reads one item at a time")
        i, copy = self.source(int(j))
        return self.crops[i] if copy < 0 else self.blend(i, copy)[0]

    def __repr__(self) -> str:
        return f"BlendedCrops({self.n} reals, {self.copies} blend(s) each, epoch {self.epoch})"


class BlendBatchSampler(Sampler[list[int]]):
    """Batches of BlendedCrops items: `reals` real crops from a (seed, epoch) permutation and `blends`
    blends of those same crops (SBI's pairing at ratio 0.5), so every batch holds both classes in the
    configured share. Full batches only, unless the reals are fewer than a batch's share."""

    def __init__(self, blended: BlendedCrops, reals: int, blends: int):
        self.blended, self.reals, self.blends = blended, reals, blends

    def __len__(self) -> int:
        return max(1, self.blended.n // self.reals)

    def __iter__(self):
        b = self.blended
        order = np.random.default_rng([b.seed, b.epoch, ORDER_STREAM]).permutation(b.n)
        for k in range(len(self)):
            chosen = order[k * self.reals:(k + 1) * self.reals]
            n_blend = max(1, int(round(len(chosen) * self.blends / self.reals)))
            t = np.arange(n_blend)
            yield [*chosen.tolist(), *(b.n * (1 + t // len(chosen)) + chosen[t % len(chosen)]).tolist()]


def copies_needed(reals: int, blends: int) -> int:
    """Blend copies per real a batch of `reals` real and `blends` blended items draws on."""
    return int(math.ceil(blends / reals))


def reals_only(crops, labels: np.ndarray, groups: np.ndarray, regions: FaceRegions | None, cfg: SBIConfig):
    """(crops, groups, regions) of the REAL rows only: the training folds' fakes are never read."""
    real = np.flatnonzero(np.asarray(labels) == 0)
    if len(real) < MIN_REALS:
        raise ValueError(f"target self_blended needs real faces in the training folds; got {len(real)}")
    log.info("self-blending from %d real crops (%d fakes of the training folds left unread)",
             len(real), len(labels) - len(real))
    regions = default_regions(cfg) if regions is None else regions
    return crops[real], np.asarray(groups)[real], regions[real]


def validation_set(crops, regions: FaceRegions, cfg: SBIConfig, seed: int) -> tuple[BlendedCrops, np.ndarray]:
    """The inner-validation reals and one fixed blend of each (its own stream: the same every epoch)."""
    items = BlendedCrops(crops, regions, cfg, seed, copies=1, stream=VAL_STREAM)
    return items, items.labels
