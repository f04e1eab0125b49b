"""Drawing a photo-like head (face, hair, neck, shoulders) in a pose and expression.

The face detector used downstream (MTCNN) was trained on photographs, so a flat cartoon face is not
found. Heads are therefore shaded like a lit sphere, with soft shadows in the eye sockets, under the
brows, nose, lower lip and chin, skin texture noise, eyes with whites, iris, pupil, highlight and lids,
and lips with a darker upper lip and a lit lower lip.

Rendering happens on an upright *canvas* in face-local units (H = face height, origin at the face
centre, v downwards) and is warped into the frame with one affine map (translation, roll, scale).
Everything that does not change within a video (skin, hair, neck, shirt under a fixed light) is drawn
once as the *base*; per frame only the eyes, brows, nose and mouth are drawn, in small windows, which
keeps a frame to a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from features.synth.identity import Identity

U_HALF = 1.3  # canvas spans u in [-U_HALF, U_HALF] ...
V_TOP, V_BOTTOM = -0.95, 2.6  # ... and v in [V_TOP, V_BOTTOM] (units of H): shoulders reach the frame bottom
FACE_TOP, FACE_BOTTOM = 0.55, 0.5  # half-heights of the face above / below the centre
AA_PX = 1.2  # anti-aliasing width of shape edges, canvas pixels
YAW_FEATURE_SHIFT = 0.05  # horizontal shift of eyes/mouth at full yaw (units of H)
YAW_NOSE_SHIFT = 0.08  # the nose tip sits further forward, so it moves more
PITCH_SHIFT = 0.03
SCLERA = np.array((236, 230, 224), np.float32)
LASH = np.array((28, 20, 18), np.float32)
MOUTH_INSIDE = np.array((62, 24, 28), np.float32)
TEETH = np.array((222, 216, 200), np.float32)
TEXTURE_CACHE = 64
FRINGE_DROP = 0.07  # a fringe hangs this far below the hairline


@dataclass(frozen=True)
class Light:
    """Key light direction (towards the light, x right, y down, z to camera) and strengths."""

    lx: float = -0.3
    ly: float = -0.4
    ambient: float = 0.55
    diffuse: float = 0.55


@dataclass(frozen=True)
class Expression:
    eye_open: float = 1.0  # 0 closed (blink) .. 1 open
    mouth_open: float = 0.0  # 0 closed .. 1 wide open (talking)
    gaze_x: float = 0.0
    yaw: float = 0.0  # -1 .. 1, features shift sideways
    pitch: float = 0.0


@dataclass(frozen=True)
class Canvas:
    """An upright canvas with `scale` pixels per face height."""

    scale: int

    @property
    def shape(self) -> tuple[int, int]:
        return int(round((V_BOTTOM - V_TOP) * self.scale)), int(round(2 * U_HALF * self.scale))

    @property
    def origin(self) -> tuple[float, float]:
        """Canvas pixel (x, y) of the face centre."""
        return U_HALF * self.scale, -V_TOP * self.scale

    def window(self, u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice]:
        h, w = self.shape
        ox, oy = self.origin
        x0 = int(np.clip(np.floor(ox + u0 * self.scale), 0, w))
        x1 = int(np.clip(np.ceil(ox + u1 * self.scale), 0, w))
        y0 = int(np.clip(np.floor(oy + v0 * self.scale), 0, h))
        y1 = int(np.clip(np.ceil(oy + v1 * self.scale), 0, h))
        return slice(y0, y1), slice(x0, x1)


@lru_cache(maxsize=8)
def grid(canvas: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Face-local (u, v) coordinates of every canvas pixel centre."""
    h, w = canvas.shape
    ox, oy = canvas.origin
    u = (np.arange(w, dtype=np.float32) + 0.5 - ox) / canvas.scale
    v = (np.arange(h, dtype=np.float32) + 0.5 - oy) / canvas.scale
    return np.meshgrid(u, v)


def soft(sdf: np.ndarray, canvas: Canvas) -> np.ndarray:
    """Coverage from a signed distance (negative inside, units of H), anti-aliased over AA_PX."""
    return np.clip(0.5 - sdf * canvas.scale / AA_PX, 0.0, 1.0)


def gauss(u: np.ndarray, v: np.ndarray, cu: float, cv: float, su: float, sv: float) -> np.ndarray:
    return np.exp(-(((u - cu) / su) ** 2) - ((v - cv) / sv) ** 2)


@lru_cache(maxsize=TEXTURE_CACHE)
def texture(seed: int, canvas: Canvas, kind: str) -> np.ndarray:
    """Zero-mean noise for skin pores/blotches ('skin') or hair strands ('hair'), fixed per identity."""
    rng = np.random.default_rng(seed + (0 if kind == "skin" else 1))
    h, w = canvas.shape
    if kind == "skin":
        fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.7)
        blotch = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), canvas.scale * 0.04)
        return 0.018 * fine / (fine.std() + 1e-6) + 0.025 * blotch / (blotch.std() + 1e-6)
    strands = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), sigmaX=0.8, sigmaY=canvas.scale * 0.05)
    return 0.18 * strands / (strands.std() + 1e-6)


def face_halfwidth(ident: Identity, v: np.ndarray) -> np.ndarray:
    """Half width of the face at height v: widest at the cheekbones, tapering to the chin."""
    a = ident.face_aspect / 2
    cheeks = 1 + ident.cheek_width * np.exp(-(((v + 0.02) / 0.14) ** 2))
    taper = 1 - ident.jaw_taper * 0.3 * np.clip(v / FACE_BOTTOM, 0, 1) ** 2
    return a * cheeks * taper


def face_radius(ident: Identity, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Normalised radius of the face outline: < 1 inside the face."""
    half_h = np.where(v < 0, FACE_TOP, FACE_BOTTOM)
    return np.sqrt((u / face_halfwidth(ident, v)) ** 2 + (v / half_h) ** 2)


def lambert(nx: np.ndarray, ny: np.ndarray, light: Light) -> np.ndarray:
    """Shading of a sphere-like surface with normal (nx, ny, sqrt(1 - nx^2 - ny^2))."""
    nz = np.sqrt(np.clip(1 - nx**2 - ny**2, 0, 1))
    lz = np.sqrt(max(0.0, 1 - light.lx**2 - light.ly**2))
    return light.ambient + light.diffuse * np.clip(nx * light.lx + ny * light.ly + nz * lz, 0, 1)


def over(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray, a: np.ndarray) -> None:
    """Premultiplied 'over' of a layer with per-pixel colour and coverage, in place."""
    img *= 1 - a[..., None]
    img += colour * a[..., None]
    alpha *= 1 - a
    alpha += a


def _hair_cap(ident: Identity, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance-ish field of the hair covering the skull (negative inside)."""
    a = ident.face_aspect / 2
    vol = ident.hair_volume * (2.2 if ident.hair_style == "curly" else 1.0)
    if ident.hair_style == "buzz":
        vol = 0.015
    ang = np.arctan2(v + 0.05, u)
    bumps = 0.02 * np.sin(ang * 14) if ident.hair_style == "curly" else 0.0
    r = np.sqrt((u / (a * 1.04 + vol)) ** 2 + ((v + 0.06) / (FACE_TOP + vol)) ** 2)
    outer = (r - 1) * 0.4 - bumps
    line = ident.hairline + (FRINGE_DROP if ident.hair_style == "fringe" else 0.0)
    hairline = line + 0.22 * (u / a) ** 2  # recedes at the temples
    if ident.hair_style == "bald":
        hairline = np.minimum(hairline, -0.62 + 0.5 * (u / a) ** 2)
    side = np.abs(u) > face_halfwidth(ident, v) * 0.93
    below = np.where(side & (v < ident.eye_y - 0.02), -1.0, v - hairline)
    return np.maximum(outer, below)


def draw_base(ident: Identity, light: Light, canvas: Canvas,
              front_hair: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The parts of a head that do not move within a video: hair, shoulders, neck, ears, shaded skin.

    A face-swap donor is drawn without `front_hair`: a swap replaces the inner face, never the hair.

    Returns premultiplied RGB, coverage alpha and the face coverage (where features may be drawn).
    """
    u, v = grid(canvas)
    h, w = canvas.shape
    img = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    skin = np.array(ident.skin, np.float32)
    hair = np.array(ident.hair, np.float32)
    hair_tex = 1 + texture(ident.texture_seed, canvas, "hair")
    a = ident.face_aspect / 2
    if ident.hair_style in ("long", "bob", "curly"):
        bottom = {"long": 0.95, "bob": 0.3, "curly": 0.35}[ident.hair_style]
        width = a + ident.hair_volume + 0.06
        sdf = np.maximum(np.abs(u) - width - 0.05 * np.clip(v, 0, 1), np.maximum(v - bottom, -0.3 - v))
        back_shade = (0.55 + 0.25 * lambert(u / (width + 0.1), 0 * v, light))[..., None]
        over(img, alpha, hair * back_shade * 0.8 * hair_tex[..., None], soft(sdf, canvas))
    # shoulders and shirt
    top = 0.78 + 0.28 * np.clip((np.abs(u) - 0.22) / 0.75, 0, 1) ** 1.3
    torso = np.maximum(top - v, np.abs(u) - 1.1)
    shirt_shade = lambert(np.clip(u / 1.2, -1, 1), np.clip((v - 1.3) / 1.5, -1, 1) * 0.3, light)
    over(img, alpha, np.array(ident.shirt, np.float32) * shirt_shade[..., None], soft(torso, canvas))
    # neck (a lit cylinder, shadowed under the chin)
    neck_w = 0.2 + 0.12 * np.clip(v - 0.6, 0, 1) ** 2
    neck = np.maximum(np.abs(u) - neck_w, np.maximum(0.2 - v, v - 1.05))
    collar = np.maximum(neck, (np.abs(u) * 1.6 + v) - 1.15)
    chin_shadow = 1 - 0.45 * np.exp(-(((v - 0.5) / 0.1) ** 2)) * (v > 0.35)
    neck_col = skin * 0.85 * (lambert(np.clip(u / 0.2, -1, 1), 0 * v, light) * chin_shadow)[..., None]
    over(img, alpha, neck_col, soft(collar, canvas))
    # ears
    for side in (-1, 1):
        cu = side * (float(face_halfwidth(ident, np.float32(0.0))) + 0.005)
        ear = np.sqrt(((u - cu) / 0.05) ** 2 + ((v + 0.0) / 0.11) ** 2) - 1
        inner = gauss(u, v, cu + side * 0.005, 0.0, 0.02, 0.06)
        ear_col = skin * (0.78 - 0.25 * inner)[..., None]
        over(img, alpha, ear_col, soft(ear * 0.05, canvas))
    # face skin: sphere shading, texture, cheek colour
    r = face_radius(ident, u, v)
    half_h = np.where(v < 0, FACE_TOP, FACE_BOTTOM)
    shade = lambert(0.85 * u / face_halfwidth(ident, v), 0.75 * v / half_h, light)
    tex = 1 + texture(ident.texture_seed, canvas, "skin")
    face_col = skin * (shade * tex)[..., None]
    blush = sum(gauss(u, v, s * 0.2, 0.1, 0.08, 0.07) for s in (-1, 1))
    face_col = face_col * (1 + 0.06 * blush[..., None] * np.array([0.6, -0.4, -0.4], np.float32))
    if ident.facial_hair > 0:
        beard_zone = np.clip((v - ident.nose_len - 0.05) / 0.06, 0, 1) * np.clip((1 - r) / 0.05, 0, 1)
        beard_a = ident.facial_hair * 0.55 * beard_zone * np.clip(hair_tex, 0, 1.5) / 1.5
        face_col = face_col * (1 - beard_a[..., None]) + hair[None, None] * 0.7 * beard_a[..., None]
    face_a = soft((r - 1) * 0.4, canvas)
    over(img, alpha, face_col, face_a)
    if not front_hair:
        return img, alpha, face_a
    # front hair
    cap = _hair_cap(ident, u, v)
    cap_shade = lambert(np.clip(u / (a + 0.15), -1, 1), np.clip((v + 0.1) / 0.7, -1, 1), light)
    cap_a = soft(cap, canvas) * (0.75 if ident.hair_style == "buzz" else 1.0)
    over(img, alpha, hair * (0.35 + 0.75 * cap_shade * hair_tex)[..., None], cap_a)
    # soft contact shadow of the hair on the forehead
    fore = np.clip(1 - np.abs(cap + 0.02) / 0.04, 0, 1) * (1 - cap_a) * face_a
    img *= (1 - 0.25 * fore)[..., None]
    return img, alpha, face_a * (1 - cap_a)
