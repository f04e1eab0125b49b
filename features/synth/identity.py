"""Procedural identities: every parameter that makes one synthetic person look unlike another.

An identity is a plain bag of numbers drawn from a seeded RNG, so the corpus is reproducible and a
donor can be rendered in any original's pose. Geometry is in units of the face height H (hairline to
chin), with the face centre at the origin, u to the right and v downwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Skin tones (RGB) from light to dark; an identity interpolates between two neighbours and adds a
# small hue jitter, so tones cover a continuum rather than a handful of classes.
SKIN_TONES = np.array(
    [
        (246, 214, 190), (236, 192, 160), (224, 172, 138), (198, 146, 110),
        (172, 120, 88), (141, 94, 64), (110, 72, 50), (84, 56, 40),
    ],
    dtype=np.float32,
)
HAIR_COLOURS = np.array(
    [
        (22, 18, 16), (45, 32, 24), (78, 52, 34), (120, 84, 52), (168, 128, 82),
        (210, 176, 120), (130, 60, 30), (150, 150, 150), (215, 215, 210),
    ],
    dtype=np.float32,
)
EYE_COLOURS = np.array(
    [(60, 40, 25), (95, 65, 40), (70, 95, 60), (70, 110, 150), (110, 130, 150), (40, 30, 25)],
    dtype=np.float32,
)
HAIR_STYLES = ("short", "long", "bob", "fringe", "buzz", "bald", "curly")
SKIN_JITTER = 0.03  # relative per-channel jitter of the skin tone
HAIR_JITTER = 12.0
FACIAL_HAIR_SHARE = 0.2
BROW_MAX_VS_SKIN = 0.55  # brows stay darker than the skin: light brows erase the eye region


@dataclass(frozen=True)
class Identity:
    """Shape, colour and feature parameters of one procedural person."""

    skin: tuple[float, float, float]
    face_aspect: float  # face width / face height
    jaw_taper: float  # 0 round chin .. 1 pointed chin
    cheek_width: float  # extra width at the cheekbones
    hair_style: str
    hair: tuple[float, float, float]
    hair_volume: float  # how far hair stands off the skull (units of H)
    hairline: float  # v of the hairline (negative: above the eyes)
    eye_colour: tuple[float, float, float]
    eye_dx: float  # half distance between the eye centres
    eye_y: float
    eye_w: float  # half width of an eye
    eye_h: float  # half height of an open eye
    brow_y: float
    brow_thick: float
    brow_arch: float
    brow_colour: tuple[float, float, float]
    nose_len: float  # v of the nose tip
    nose_w: float  # half width of the nostrils
    mouth_y: float
    mouth_w: float  # half width of the mouth
    lip_thick: float
    lip: tuple[float, float, float]
    facial_hair: float  # 0 none .. 1 full stubble/beard shading
    shirt: tuple[float, float, float]
    texture_seed: int  # seeds the skin/hair texture noise


def _pick_colour(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> tuple[float, ...]:
    """A colour between two neighbouring palette entries, plus per-channel jitter."""
    pos = rng.uniform(0, len(palette) - 1)
    i = int(pos)
    j = min(i + 1, len(palette) - 1)
    col = palette[i] * (1 - (pos - i)) + palette[j] * (pos - i)
    col = col + rng.normal(0, jitter, 3)
    return tuple(float(c) for c in np.clip(col, 0, 255))


def _skin(rng: np.random.Generator) -> tuple[float, ...]:
    """A tone between two palette neighbours with a small *relative* per-channel jitter: an additive
    jitter turns dark tones olive-green or grey, and such faces are not found by the detector."""
    pos = rng.uniform(0, len(SKIN_TONES) - 1)
    i = int(pos)
    j = min(i + 1, len(SKIN_TONES) - 1)
    col = SKIN_TONES[i] * (1 - (pos - i)) + SKIN_TONES[j] * (pos - i)
    col = col * np.exp(rng.normal(0, SKIN_JITTER, 3))
    return tuple(float(c) for c in np.clip(col, 0, 255))


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one identity; all ranges are kept inside plausible human proportions."""
    skin = _skin(rng)
    hair = _pick_colour(rng, HAIR_COLOURS, HAIR_JITTER)
    lip_base = np.array(skin) * np.array([0.85, 0.58, 0.58]) + rng.normal(0, 8, 3)
    style = HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))]
    brow_rgb = np.minimum(np.array(hair) * rng.uniform(0.55, 0.9), np.array(skin) * BROW_MAX_VS_SKIN)
    brow = tuple(float(c) for c in np.clip(brow_rgb, 10, 200))
    return Identity(
        skin=skin,
        face_aspect=float(rng.uniform(0.68, 0.80)),
        jaw_taper=float(rng.uniform(0.0, 0.8)),
        cheek_width=float(rng.uniform(0.0, 0.06)),
        hair_style=style,
        hair=hair,
        hair_volume=float(rng.uniform(0.03, 0.12)),
        hairline=float(rng.uniform(-0.36, -0.28)),
        eye_colour=_pick_colour(rng, EYE_COLOURS, 8.0),
        eye_dx=float(rng.uniform(0.165, 0.2)),
        eye_y=float(rng.uniform(-0.1, -0.06)),
        eye_w=float(rng.uniform(0.068, 0.082)),
        eye_h=float(rng.uniform(0.026, 0.036)),
        brow_y=float(rng.uniform(-0.19, -0.16)),
        brow_thick=float(rng.uniform(0.018, 0.032)),
        brow_arch=float(rng.uniform(0.005, 0.03)),
        brow_colour=brow,
        nose_len=float(rng.uniform(0.14, 0.19)),
        nose_w=float(rng.uniform(0.045, 0.062)),
        mouth_y=float(rng.uniform(0.28, 0.32)),
        mouth_w=float(rng.uniform(0.095, 0.125)),
        lip_thick=float(rng.uniform(0.018, 0.03)),
        lip=tuple(float(c) for c in np.clip(lip_base, 0, 255)),
        facial_hair=float(rng.uniform(0.3, 1.0)) if rng.random() < FACIAL_HAIR_SHARE else 0.0,
        shirt=tuple(float(c) for c in rng.uniform(20, 235, 3)),
        texture_seed=int(rng.integers(2**31 - 1)),
    )
