"""The moving parts of a face (eyes, brows, nose, mouth), drawn per frame in small canvas windows.

Each part darkens or paints the premultiplied canvas in place, only inside its own window, so a
frame costs a few small array operations. Shapes follow the expression: eyelids close for a blink,
lips part and show the mouth interior and teeth while talking, and yaw shifts the parts sideways
(the nose more than the eyes, as it stands further forward).
"""

from __future__ import annotations

import numpy as np

from features.synth.identity import Identity
from features.synth.render import (
    LASH,
    MOUTH_INSIDE,
    PITCH_SHIFT,
    SCLERA,
    TEETH,
    YAW_FEATURE_SHIFT,
    YAW_NOSE_SHIFT,
    Canvas,
    Expression,
    Light,
    face_halfwidth,
    gauss,
    grid,
    lambert,
    soft,
)

CLOSED_LID_DROP = 0.35  # a closed lid line sits this far (x eye half height) below the eye centre
MOUTH_GAP = 0.06  # lip separation at mouth_open = 1 (units of H)


def _win(canvas: Canvas, cu: float, cv: float, hu: float, hv: float):
    sy, sx = canvas.window(cu - hu, cu + hu, cv - hv, cv + hv)
    u, v = grid(canvas)
    return (sy, sx), u[sy, sx], v[sy, sx]


def _shade(ident: Identity, u: np.ndarray, v: np.ndarray, light: Light) -> np.ndarray:
    return lambert(0.85 * u / face_halfwidth(ident, v), 0.75 * v / 0.5, light)


def _darken(img: np.ndarray, sl, amount: np.ndarray) -> None:
    img[sl] *= (1 - np.clip(amount, 0, 0.95))[..., None]


def _paint(img: np.ndarray, sl, colour: np.ndarray, a: np.ndarray) -> None:
    a = np.clip(a, 0, 1)[..., None]
    img[sl] = img[sl] * (1 - a) + colour * a


def draw_eye(img, canvas: Canvas, ident: Identity, expr: Expression, light: Light, side: int) -> None:
    """Socket shadow, white, iris, pupil, highlight, eyelid crease and lash line of one eye."""
    ex = side * ident.eye_dx + expr.yaw * YAW_FEATURE_SHIFT
    ey = ident.eye_y + expr.pitch * PITCH_SHIFT
    sl, u, v = _win(canvas, ex, ey, ident.eye_w * 1.8, ident.eye_h * 3.2)
    if u.size == 0:
        return
    shade = _shade(ident, u, v, light)
    _darken(img, sl, 0.22 * gauss(u, v, ex, ey - 0.01, ident.eye_w * 1.3, ident.eye_h * 2.4))
    t = (u - ex) / ident.eye_w
    bulge = np.clip(1 - t**2, 0, 1)
    opening = max(expr.eye_open, 0.0)
    closed_line = ey + CLOSED_LID_DROP * ident.eye_h * bulge
    upper = closed_line + (ey - ident.eye_h * bulge**0.7 - closed_line) * opening
    lower = closed_line + (ey + 0.7 * ident.eye_h * bulge**0.8 - closed_line) * opening
    inside = np.minimum(np.minimum(v - upper, lower - v), (1 - np.abs(t)) * ident.eye_w)
    eye_a = soft(-inside, canvas)
    if opening > 0.05:
        iu = ex + expr.gaze_x * ident.eye_w * 0.35
        ri = ident.eye_h * 1.1
        rr = np.sqrt((u - iu) ** 2 + (v - ey) ** 2) / ri
        corner = 1 - 0.3 * t**2
        col = SCLERA * (shade * corner)[..., None]
        iris = np.array(ident.eye_colour, np.float32) * (1.1 - 0.6 * np.clip(rr, 0, 1) ** 3)[..., None]
        col = col * (1 - soft((rr - 1) * ri, canvas)[..., None]) + iris * soft((rr - 1) * ri, canvas)[..., None]
        col *= (1 - soft((rr - 0.42) * ri, canvas) * 0.92)[..., None]  # pupil
        lid_shadow = 0.45 * np.exp(-np.clip(v - upper, 0, None) / (0.35 * ident.eye_h))
        col *= (1 - lid_shadow)[..., None]
        glint = gauss(u, v, iu - 0.3 * ri, ey - 0.35 * ri, 0.18 * ri, 0.18 * ri)
        col += (255 - col) * (0.85 * glint)[..., None]
        _paint(img, sl, col, eye_a)
    lash = np.exp(-(((v - upper) / 0.01) ** 2)) * np.clip(1.15 - np.abs(t), 0, 1)
    lash *= 1 + 0.4 * np.clip(side * t, 0, 1)
    _paint(img, sl, LASH, 0.85 * lash)
    crease = np.exp(-(((v - (upper - 0.028 * (0.4 + 0.6 * opening))) / 0.007) ** 2)) * bulge
    _darken(img, sl, 0.18 * crease)
    _darken(img, sl, 0.12 * np.exp(-(((v - lower - 0.006) / 0.006) ** 2)) * bulge * opening)


def draw_brow(img, canvas: Canvas, ident: Identity, expr: Expression, side: int) -> None:
    bx = side * (ident.eye_dx + 0.01) + expr.yaw * YAW_FEATURE_SHIFT
    by = ident.brow_y + expr.pitch * PITCH_SHIFT
    bw = ident.eye_w * 1.35
    sl, u, v = _win(canvas, bx, by, bw * 1.2, 0.06)
    if u.size == 0:
        return
    t = (u - bx) / bw
    centre = by - ident.brow_arch * (1 - t**2) + 0.01 * side * t
    thick = ident.brow_thick * (1 - 0.45 * np.clip(side * t, 0, 1))
    sdf = np.maximum(np.abs(v - centre) - thick / 2, (np.abs(t) - 1) * bw)
    a = soft(sdf, canvas) * 0.9
    _darken(img, sl, 0.15 * gauss(u, v, bx, by + 0.03, bw, 0.025))  # shadow under the brow ridge
    _paint(img, sl, np.array(ident.brow_colour, np.float32), a)


def draw_nose(img, canvas: Canvas, ident: Identity, expr: Expression, light: Light) -> None:
    """Ridge highlight, side shadows, tip, wings, nostrils and the shadow under the nose."""
    nx = expr.yaw * YAW_NOSE_SHIFT
    tip = ident.nose_len + expr.pitch * PITCH_SHIFT
    top = ident.eye_y + expr.pitch * PITCH_SHIFT
    sl, u, v = _win(canvas, nx, (top + tip) / 2 + 0.02, ident.nose_w * 2.2, (tip - top) / 2 + 0.07)
    if u.size == 0:
        return
    along = np.clip((v - top) / (tip - top), 0, 1) * (v < tip + 0.01)
    ridge_u = nx * (0.3 + 0.7 * along)
    light_side = 1 if light.lx > 0 else -1
    shadow_side = gauss(u, v, ridge_u - light_side * 0.045, tip - 0.05, 0.02, (tip - top) * 0.5)
    _darken(img, sl, 0.2 * shadow_side * along)
    _darken(img, sl, 0.07 * gauss(u, v, ridge_u + light_side * 0.045, tip - 0.05, 0.02, (tip - top) * 0.5) * along)
    ridge = gauss(u, v, ridge_u + light_side * 0.008, tip - 0.06, 0.012, (tip - top) * 0.45)
    img[sl] += ((255 - img[sl]) * (0.1 * ridge)[..., None])
    ball = gauss(u, v, nx + light_side * 0.01, tip - 0.02, 0.03, 0.022)
    img[sl] += ((255 - img[sl]) * (0.1 * ball)[..., None])
    for s in (-1, 1):
        wing = np.sqrt(((u - nx - s * ident.nose_w) / 0.024) ** 2 + ((v - tip + 0.002) / 0.022) ** 2)
        _darken(img, sl, 0.25 * np.exp(-(((wing - 1) / 0.25) ** 2)))
        nostril = gauss(u, v, nx + s * ident.nose_w * 0.5, tip + 0.008, 0.016, 0.008)
        _darken(img, sl, 0.7 * nostril)
    _darken(img, sl, 0.2 * gauss(u, v, nx, tip + 0.035, ident.nose_w * 1.1, 0.012))


def draw_mouth(img, canvas: Canvas, ident: Identity, expr: Expression, light: Light) -> None:
    """Lips with shading, the lip line or (when talking) the dark interior and upper teeth."""
    mx = expr.yaw * YAW_FEATURE_SHIFT
    my = ident.mouth_y + expr.pitch * PITCH_SHIFT
    gap = MOUTH_GAP * np.clip(expr.mouth_open, 0, 1)
    sl, u, v = _win(canvas, mx, my + gap / 2, ident.mouth_w * 1.3, 0.05 + gap)
    if u.size == 0:
        return
    shade = _shade(ident, u, v, light)
    t = (u - mx) / ident.mouth_w
    arc = np.sqrt(np.clip(1 - t**2, 0, 1))
    up_top = my - gap * 0.35 - ident.lip_thick * 0.85 * arc + 0.006 * np.exp(-((t / 0.15) ** 2))
    up_bot = my - gap * 0.35 + 0.003 * arc
    lo_top = my + gap * 0.65 + 0.002 * arc
    lo_bot = my + gap * 0.65 + ident.lip_thick * 1.15 * arc
    lip = np.array(ident.lip, np.float32)
    edge = (np.abs(t) - 1) * ident.mouth_w
    if gap > 0.004:
        inside = soft(np.maximum(np.maximum(up_bot - v, v - lo_top), edge), canvas)
        teeth = soft(np.maximum(np.maximum(up_bot - v, v - (up_bot + min(gap * 0.45, 0.02))), edge + 0.25 * ident.mouth_w), canvas)
        col = MOUTH_INSIDE * (1 + 0.4 * teeth)[..., None]
        col = col * (1 - teeth[..., None]) + (TEETH * shade[..., None]) * teeth[..., None]
        _paint(img, sl, col, inside)
    upper = soft(np.maximum(np.maximum(up_top - v, v - up_bot), edge), canvas)
    lower = soft(np.maximum(np.maximum(lo_top - v, v - lo_bot), edge), canvas)
    _paint(img, sl, lip * (0.8 * shade)[..., None], upper)
    lower_light = 0.95 + 0.2 * gauss(u, v, mx, (lo_top + lo_bot) / 2 - 0.004, ident.mouth_w * 0.5, 0.008)
    _paint(img, sl, lip * (shade * lower_light)[..., None], lower)
    line = np.exp(-(((v - (up_bot + lo_top) / 2) / 0.005) ** 2)) * np.clip(1.1 - np.abs(t), 0, 1)
    _darken(img, sl, 0.55 * line)
    _darken(img, sl, 0.18 * gauss(u, v, mx, lo_bot + 0.022, ident.mouth_w * 0.7, 0.012))
    for s in (-1, 1):
        _darken(img, sl, 0.3 * gauss(u, v, mx + s * ident.mouth_w, my + gap * 0.15, 0.01, 0.01))


def draw_face(base: tuple[np.ndarray, np.ndarray, np.ndarray], canvas: Canvas, ident: Identity,
              expr: Expression, light: Light) -> tuple[np.ndarray, np.ndarray]:
    """One frame's head: a copy of the video's base with the moving parts drawn on."""
    img = base[0].copy()
    for side in (-1, 1):
        draw_brow(img, canvas, ident, expr, side)
        draw_eye(img, canvas, ident, expr, light, side)
    draw_nose(img, canvas, ident, expr, light)
    draw_mouth(img, canvas, ident, expr, light)
    return img, base[1]
