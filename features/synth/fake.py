"""Face swaps: a donor identity rendered in the original's pose and expression, blended in.

The classic artifacts of a face swap each get a per-fake random strength in [0, 1]:

- seam: the feathered mask hardens and its boundary band changes brightness;
- colour: the donor's skin tone is only partly matched to the original, with a white-balance shift;
- resolution: the swapped face is rendered small and upscaled (blurrier than its surroundings);
- flicker: the swapped region jitters in position, scale and colour from frame to frame.

At strength 0 the swap is colour-matched, full-resolution, softly blended and steady: only the
identity changes, which no detector can see without knowing the person. A share of fakes
(`invisible_share`, 0 in the demo corpus) can have all strengths near zero, so that some fakes are
nearly invisible, as in DFDC.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from features.synth.identity import Identity
from features.synth.parts import draw_face
from features.synth.render import draw_base, face_halfwidth, grid
from features.synth.scene import Scene, warp, warp_roi

ARTIFACTS = ("seam", "colour", "resolution", "flicker")
MASK_BOTTOM = 0.44  # the swap mask runs from the brows/forehead to just above the chin
MASK_TOP_RANGE = (-0.30, -0.22)  # ... its top stays below the original's hairline
MASK_WIDTH = 0.9  # x the narrower face half width
FEATHER_SOFT, FEATHER_HARD = 0.45, 0.03  # mask transition width (normalised radius) at seam 0 / 1
SEAM_RING = 0.40  # brightness change of the boundary band at seam 1
COLOUR_TINT = 0.06  # log-gain spread of the unmatched white balance at colour 1
COLOUR_UNMATCHED = 0.5  # share of the skin-tone difference left unmatched at colour 1 (more looks unnatural)
RES_MAX_DROP = 0.75  # at resolution 1 the face is rendered at 25 % size and upscaled
FLICKER_PX = 0.02  # position jitter at flicker 1, in face heights
FLICKER_ZOOM = 0.025
FLICKER_GAIN = 0.08
FLICKER_MASK = 0.04
CROP_PAD = 0.08  # margin around the mask when cropping the donor canvas (units of H)


@dataclass(frozen=True)
class FakeSpec:
    """One fake: who the donor is and how strong each artifact is."""

    donor: Identity
    seam: float
    colour: float
    resolution: float
    flicker: float
    seed: int

    def strengths(self) -> dict[str, float]:
        return {a: float(getattr(self, a)) for a in ARTIFACTS}


def sample_fake(rng: np.random.Generator, donor: Identity, cfg) -> FakeSpec:
    """Random artifact strengths: a share of near-invisible fakes; otherwise each artifact is
    present with probability `artifact_presence` at a skewed-low strength up to its maximum."""
    maxima = {"seam": cfg.seam_max, "colour": cfg.colour_max, "resolution": cfg.resolution_max,
              "flicker": cfg.flicker_max}
    invisible = rng.random() < cfg.invisible_share
    strengths = {}
    for name in ARTIFACTS:
        if invisible:
            strengths[name] = float(rng.uniform(0, cfg.invisible_max))
        elif rng.random() < cfg.artifact_presence:
            strengths[name] = float(maxima[name] * rng.uniform(0, 1) ** cfg.strength_power)
        else:
            strengths[name] = float(rng.uniform(0, cfg.invisible_max))
    return FakeSpec(donor=donor, seed=int(rng.integers(2**31 - 1)), **strengths)


def swap_mask(orig: Identity, donor: Identity, canvas, seam: float) -> tuple[np.ndarray, np.ndarray]:
    """Feathered elliptical mask over the inner face (canvas), and its boundary band."""
    u, v = grid(canvas)
    top = float(np.clip(orig.hairline + 0.02, *MASK_TOP_RANGE))
    cv, rv = (top + MASK_BOTTOM) / 2, (MASK_BOTTOM - top) / 2
    ru = MASK_WIDTH * min(float(face_halfwidth(orig, np.float32(0))), float(face_halfwidth(donor, np.float32(0))))
    r = np.sqrt((u / ru) ** 2 + ((v - cv) / rv) ** 2)
    width = FEATHER_SOFT + (FEATHER_HARD - FEATHER_SOFT) * seam
    x = np.clip((1 - r) / width, 0, 1)
    mask = (x * x * (3 - 2 * x)).astype(np.float32)
    return mask, (4 * mask * (1 - mask)).astype(np.float32)


def colour_gain(orig_base, donor_base, mask: np.ndarray, spec: FakeSpec, rng) -> np.ndarray:
    """Per-channel gain taking the donor's skin to the original's, undone by `colour` strength."""
    inner = (mask > 0.5).astype(np.float32) * orig_base[1] * donor_base[1]
    w = inner.sum() + 1e-6
    mo = (orig_base[0] * inner[..., None]).sum((0, 1)) / w
    md = (donor_base[0] * inner[..., None]).sum((0, 1)) / w
    matched = 1 - COLOUR_UNMATCHED * spec.colour
    log_gain = matched * np.log((mo + 1) / (md + 1)) + spec.colour * rng.normal(0, COLOUR_TINT, 3)
    return np.exp(log_gain).astype(np.float32)


def _lowres(img: np.ndarray, resolution: float) -> np.ndarray:
    f = 1 - RES_MAX_DROP * resolution
    if f > 0.97:
        return img
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(2, int(w * f)), max(2, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def swap_frames(scene: Scene, frames: list[np.ndarray], spec: FakeSpec) -> list[np.ndarray]:
    """The fake's clean frames: person 0's inner face replaced by the donor's, frame by frame."""
    rng = np.random.default_rng(spec.seed)
    track = scene.tracks[0]
    canvas, light = track.canvas, track.light
    orig_base = draw_base(track.ident, light, canvas)
    donor_base = draw_base(spec.donor, light, canvas, front_hair=False)
    mask, band = swap_mask(track.ident, spec.donor, canvas, spec.seam)
    gain = colour_gain(orig_base, donor_base, mask, spec, rng)
    ring = (1 + float(rng.choice([-1, 1])) * SEAM_RING * spec.seam * band).astype(np.float32)
    ys, xs = np.nonzero(mask > 0)
    pad = int(CROP_PAD * canvas.scale)
    y0, x0 = max(ys.min() - pad, 0), max(xs.min() - pad, 0)
    crop = (slice(y0, ys.max() + pad + 1), slice(x0, xs.max() + pad + 1))
    mask, ring = mask[crop], ring[crop]
    out = []
    for i, frame in enumerate(frames):
        img, _ = draw_face(donor_base, canvas, spec.donor, track.expression(i), light)
        img = _lowres(img[crop], spec.resolution) * ring[..., None] * gain
        jit = rng.normal(0, 1, 7) * spec.flicker
        img = img * (1 + FLICKER_GAIN * jit[4:7]).astype(np.float32)
        dx, dy = FLICKER_PX * canvas.scale * jit[0], FLICKER_PX * canvas.scale * jit[1]
        zoom = 1 + FLICKER_ZOOM * jit[2]
        m_face = _shift(track.affine(i, dx, dy, zoom), x0, y0)
        m_mask = _shift(track.affine(i, dx, dy, zoom * (1 + FLICKER_MASK * jit[3])), x0, y0)
        frame = frame.copy()
        roi, m_face = warp_roi(m_face, img.shape[:2], frame.shape)
        if roi is not None:
            size = (roi[1].stop - roi[1].start, roi[0].stop - roi[0].start)
            m_mask[:, 2] -= (roi[1].start, roi[0].start)
            a = warp(mask, m_mask, size)[..., None]
            frame[roi] = frame[roi] * (1 - a) + warp(img, m_face, size) * a
        out.append(frame)
    return out


def _shift(m: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """The map of a canvas crop starting at (x0, y0), from the map of the whole canvas."""
    m = m.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    return m
