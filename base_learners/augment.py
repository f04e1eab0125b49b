"""Training-time augmentation of uint8 RGB face crops (numpy + OpenCV, per sample, CPU-cheap).

Chosen for what separates real from fake faces and what must NOT: the evidence is local (blending
seams, colour/resolution mismatch, flicker) so the model must survive re-compression, blur, small
misalignments and lighting changes without learning them as shortcuts. JPEG runs first on the crop
at its native resolution (like the video codec did), then the crop is resized to the model's input
size and the remaining transforms run at that size. Cut-out hides part of the face so no single
region (e.g. one seam) carries all the evidence.

Randomness comes from a numpy Generator passed in, one per sample, seeded from (seed, epoch, index)
by the training loader: results are reproducible whatever the worker count or batch order.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PIXEL_MAX = 255.0
GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights, for saturation and contrast


@dataclass
class AugmentConfig:
    """Probabilities (p_*) and strengths; all p_* = 0 turns augmentation into a plain resize."""

    p_flip: float = 0.5
    p_affine: float = 0.5
    max_rotate_deg: float = 10.0
    max_scale: float = 0.1  # scale in [1 - max_scale, 1 + max_scale]
    max_translate: float = 0.05  # fraction of the side
    p_color: float = 0.5
    brightness: float = 0.2  # factor in [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.2
    p_blur: float = 0.2
    max_blur_sigma: float = 1.2
    p_jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (40, 95)
    p_cutout: float = 0.3
    cutout_max_frac: float = 0.35  # side of the cut-out square, as a fraction of the image side


def center_crop(img: np.ndarray, frac: float) -> np.ndarray:
    """The central `frac` of a square HWC crop (a view, not a copy); frac 1 returns it as is."""
    side = img.shape[0]
    keep = max(1, int(round(side * frac)))
    if keep >= side:
        return img
    start = (side - keep) // 2
    return img[start : start + keep, start : start + keep]


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a square HWC uint8 crop: INTER_AREA to shrink (no aliasing), linear to grow."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Re-compress with cv2's JPEG codec (BGR order: chroma subsampling hits the right planes)."""
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("cv2.imencode failed on a crop of shape " + str(img.shape))
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def affine(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    angle = rng.uniform(-cfg.max_rotate_deg, cfg.max_rotate_deg)
    scale = rng.uniform(1.0 - cfg.max_scale, 1.0 + cfg.max_scale)
    m = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), angle, scale)
    m[:, 2] += rng.uniform(-cfg.max_translate, cfg.max_translate, size=2) * size
    return cv2.warpAffine(
        img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


def color(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation factors, applied in float then clipped back to uint8."""
    x = img.astype(np.float32)
    x *= rng.uniform(1.0 - cfg.brightness, 1.0 + cfg.brightness)
    grey = x @ np.asarray(GREY, np.float32)
    mean = grey.mean()
    x = (x - mean) * rng.uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast) + mean
    grey = (x @ np.asarray(GREY, np.float32))[..., None]
    x = (x - grey) * rng.uniform(1.0 - cfg.saturation, 1.0 + cfg.saturation) + grey
    return np.clip(x + 0.5, 0, PIXEL_MAX).astype(np.uint8)


def cutout(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    side = max(1, int(round(rng.uniform(0.0, cfg.cutout_max_frac) * size)))
    y0, x0 = rng.integers(0, size - side + 1, size=2)
    out = img.copy()
    out[y0 : y0 + side, x0 : x0 + side] = 0
    return out


def augment(img: np.ndarray, size: int, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One crop (S, S, 3) uint8 RGB -> augmented (size, size, 3) uint8 RGB."""
    if rng.random() < cfg.p_jpeg:
        img = jpeg(img, rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    img = resize(img, size)
    if rng.random() < cfg.p_flip:
        img = img[:, ::-1]
    if rng.random() < cfg.p_affine:
        img = affine(img, cfg, rng)
    if rng.random() < cfg.p_color:
        img = color(img, cfg, rng)
    if rng.random() < cfg.p_blur:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.1, cfg.max_blur_sigma))
    if rng.random() < cfg.p_cutout:
        img = cutout(img, cfg, rng)
    return np.ascontiguousarray(img)
