"""A video's scene: background, lighting, camera, and each person's smooth motion over time.

Everything here is drawn from one per-group RNG and shared by an original and all of its fakes:
the fakes are made from the original's frames (as in DFDC), so resolution, frame rate, background,
motion, lighting and the camera's noise/blur/JPEG settings are identical within a group by
construction. Reals and fakes therefore come from one distribution of every whole-frame statistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from features.synth.identity import Identity, sample_identity
from features.synth.parts import draw_face
from features.synth.render import Canvas, Expression, Light, draw_base

FACE_BOX_TOP = -0.35  # ground-truth face box: from about the hairline ...
FACE_BOX_BOTTOM = 0.5  # ... to the chin (units of H), ear to ear across
BLINK_RATE_HZ = 0.35
BLINK_SECONDS = 0.2
TALK_SHARE = 0.7  # share of time a talking person's mouth moves
EXIT_FRAMES = (8, 14)  # length of a leave-the-frame excursion, frames
TWO_PERSON_FACE_SCALE = 0.8  # faces are smaller when two people share the frame
MIN_BLUR = 0.05  # blur sigmas below this are skipped
# peak amplitudes of the smooth head motion
SWAY_X, SWAY_Y = 0.05, 0.03  # x frame width / height
ROLL_DEG, ZOOM, YAW, PITCH, GAZE = 7.0, 0.05, 0.5, 0.4, 0.6
FACE_CENTRE_Y = (0.36, 0.46)  # x frame height
TWO_PERSON_X = (0.3, 0.74)  # x frame width
EXPOSURE_TARGET, EXPOSURE_MAX = 130.0, 1.7  # skin luma the camera exposes for; max gain
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
LIGHT_DRIFT, WHITE_BALANCE = 0.05, 0.04  # global brightness drift, per-channel white balance spread


@dataclass
class Track:
    """One person's identity and per-frame pose and expression."""

    ident: Identity
    canvas: Canvas
    light: Light
    cx: np.ndarray
    cy: np.ndarray
    roll: np.ndarray  # degrees
    zoom: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    eye_open: np.ndarray
    mouth_open: np.ndarray
    gaze: np.ndarray

    def expression(self, i: int) -> Expression:
        return Expression(float(self.eye_open[i]), float(self.mouth_open[i]), float(self.gaze[i]),
                          float(self.yaw[i]), float(self.pitch[i]))

    def affine(self, i: int, dx: float = 0.0, dy: float = 0.0, zoom: float = 1.0) -> np.ndarray:
        """2x3 map from canvas pixel indices to frame pixel indices for frame i."""
        k = float(self.zoom[i]) * zoom
        th = np.deg2rad(float(self.roll[i]))
        rot = k * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        origin = np.array(self.canvas.origin) - 0.5
        centre = np.array([self.cx[i] + dx, self.cy[i] + dy]) - 0.5
        return np.hstack([rot, (centre - rot @ origin)[:, None]]).astype(np.float64)

    def face_box(self, i: int) -> np.ndarray:
        """Axis-aligned frame box (x0, y0, x1, y1) of the face, possibly outside the frame."""
        hw = self.ident.face_aspect / 2 * (1 + self.ident.cheek_width)
        corners = np.array([[-hw, FACE_BOX_TOP], [hw, FACE_BOX_TOP], [-hw, FACE_BOX_BOTTOM], [hw, FACE_BOX_BOTTOM]])
        pix = corners * self.canvas.scale + np.array(self.canvas.origin)
        pts = pix @ self.affine(i)[:, :2].T + self.affine(i)[:, 2] + 0.5
        return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])


@dataclass
class Scene:
    width: int
    height: int
    fps: int
    background: np.ndarray  # (h, w, 3) float32 RGB
    tracks: list[Track]
    gain: np.ndarray  # per-frame global brightness
    tint: np.ndarray  # per-video white balance
    noise: float
    blur: float
    jpeg: int
    camera_seed: int

    @property
    def n_frames(self) -> int:
        return len(self.gain)


def smooth(rng: np.random.Generator, n: int, fps: float, amp: float, freqs=(0.08, 0.6)) -> np.ndarray:
    """A smooth random signal of peak amplitude about `amp`: a sum of three slow sinusoids."""
    t = np.arange(n) / fps
    sig = sum(rng.normal() * np.sin(2 * np.pi * rng.uniform(*freqs) * t + rng.uniform(0, 2 * np.pi))
              for _ in range(3))
    return (amp * sig / 2.0).astype(np.float32)


def blinks(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    t = np.arange(n) / fps
    eye = np.ones(n, np.float32)
    for start in np.cumsum(rng.exponential(1 / BLINK_RATE_HZ, 8)) - rng.uniform(0, 1.5):
        bump = np.clip(1 - np.abs(t - start - BLINK_SECONDS / 2) / (BLINK_SECONDS / 2), 0, 1)
        eye = np.minimum(eye, 1 - bump)
    return eye


def talking(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    """Syllable-rate mouth opening (3-6 Hz) inside talking segments."""
    t = np.arange(n) / fps
    syll = np.clip(0.5 + 0.6 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6))
                   + 0.3 * np.sin(2 * np.pi * rng.uniform(1, 2.5) * t), 0, 1)
    env = (smooth(rng, n, fps, 1.0, (0.2, 0.5)) + (TALK_SHARE - 0.5) * 2 > 0).astype(np.float32)
    env = np.convolve(env, np.ones(3) / 3, mode="same")
    return (syll * env * rng.uniform(0.5, 1.0)).astype(np.float32)


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A room-like backdrop: a tilted two-colour gradient, a few soft shapes, a texture."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ang) * xx / w + np.sin(ang) * yy / h)
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    c0, c1 = rng.uniform(15, 240, 3), rng.uniform(15, 240, 3)
    img = (c0 * (1 - ramp[..., None]) + c1 * ramp[..., None]).astype(np.float32)
    for _ in range(int(rng.integers(2, 8))):
        layer = np.zeros((h, w), np.float32)
        col = rng.uniform(10, 245, 3)
        x0, y0 = int(rng.uniform(-0.2, 1) * w), int(rng.uniform(-0.2, 1) * h)
        kind = rng.integers(3)
        if kind == 0:
            x1, y1 = x0 + int(rng.uniform(0.1, 0.5) * w), y0 + int(rng.uniform(0.1, 0.6) * h)
            cv2.rectangle(layer, (x0, y0), (x1, y1), 1.0, -1)
        elif kind == 1:
            cv2.circle(layer, (x0, y0), int(rng.uniform(0.05, 0.25) * min(w, h)), 1.0, -1)
        else:
            cv2.line(layer, (x0, 0), (x0 + int(rng.uniform(-0.3, 0.3) * w), h), 1.0, int(rng.integers(2, 12)))
        layer = cv2.GaussianBlur(layer, (0, 0), rng.uniform(0.6, 4.0)) * rng.uniform(0.3, 0.9)
        img = img * (1 - layer[..., None]) + col * layer[..., None]
    tex = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), rng.uniform(1.0, 4.0))
    img *= (1 + rng.uniform(0.005, 0.035) * tex / (tex.std() + 1e-6))[..., None]
    vignette = 1 - rng.uniform(0, 0.35) * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2)
    return img * vignette[..., None]


def make_track(rng, ident: Identity, light: Light, n: int, fps: float, w: int, h: int,
               centre: tuple[float, float], face_h: int, exit_side: int) -> Track:
    """Smooth sway, roll, zoom, yaw and pitch, blinks and talking; `exit_side` (-1/+1, 0 for none)
    sends the head once out of that side of the frame and back."""
    cx = centre[0] + smooth(rng, n, fps, SWAY_X * w)
    cy = centre[1] + smooth(rng, n, fps, SWAY_Y * h)
    if exit_side:
        length = int(rng.integers(*EXIT_FRAMES))
        start = int(rng.integers(0, max(1, n - length)))
        i = np.arange(n)
        bump = np.where((i >= start) & (i < start + length), np.sin(np.pi * (i - start) / length) ** 2, 0)
        cx = cx + exit_side * bump * (w / 2 + face_h * 1.1)
    return Track(
        ident=ident, canvas=Canvas(face_h), light=light, cx=cx, cy=cy,
        roll=smooth(rng, n, fps, ROLL_DEG), zoom=1 + smooth(rng, n, fps, ZOOM),
        yaw=smooth(rng, n, fps, YAW), pitch=smooth(rng, n, fps, PITCH),
        eye_open=blinks(rng, n, fps), mouth_open=talking(rng, n, fps),
        gaze=np.clip(smooth(rng, n, fps, GAZE, (0.1, 1.0)), -1, 1),
    )


def exposure(ident: Identity) -> float:
    """Auto-exposure: a camera brightens a scene whose subject has dark skin (up to a limit),
    as a dark, low-contrast face is also what a detector misses most."""
    luma = float(np.dot(ident.skin, LUMA_WEIGHTS))
    return float(np.clip(EXPOSURE_TARGET / max(luma, 1.0), 1.0, EXPOSURE_MAX))


def make_scene(rng: np.random.Generator, cfg, ident: Identity, size: tuple[int, int], fps: int) -> Scene:
    """Draw a whole scene for one original; `cfg` is the SynthConfig."""
    w, h = size
    n = cfg.n_frames
    light = Light(lx=float(rng.uniform(-0.6, 0.6)), ly=float(rng.uniform(-0.6, 0.1)),
                  ambient=float(rng.uniform(0.45, 0.65)), diffuse=float(rng.uniform(0.4, 0.6)))
    two = w > h and rng.random() < cfg.two_person_share
    face_h = int(round(min(w, h) * rng.uniform(*cfg.face_height_range) * (TWO_PERSON_FACE_SCALE if two else 1)))
    exit_side = int(rng.choice([-1, 1])) if rng.random() < cfg.exit_share else 0
    cy = h * rng.uniform(*FACE_CENTRE_Y)
    if two:
        tracks = [make_track(rng, ident, light, n, fps, w, h, (w * TWO_PERSON_X[0], cy), face_h, -abs(exit_side)),
                  # the second person stays; the first leaves on the far side
                  make_track(rng, sample_identity(rng), light, n, fps, w, h,
                             (w * TWO_PERSON_X[1], cy + rng.uniform(-0.03, 0.03) * h), face_h, 0)]
    else:
        tracks = [make_track(rng, ident, light, n, fps, w, h, (w * rng.uniform(0.42, 0.58), cy), face_h, exit_side)]
    return Scene(
        width=w, height=h, fps=fps, background=background(rng, w, h), tracks=tracks,
        gain=exposure(ident) * (1 + smooth(rng, n, fps, LIGHT_DRIFT)),
        tint=rng.normal(1, WHITE_BALANCE, 3).astype(np.float32),
        noise=float(rng.uniform(*cfg.noise_sigma_range)), blur=float(rng.uniform(*cfg.blur_sigma_range)),
        jpeg=int(rng.integers(cfg.jpeg_quality_range[0], cfg.jpeg_quality_range[1] + 1)),
        camera_seed=int(rng.integers(2**31 - 1)),
    )


def warp_roi(m: np.ndarray, src_shape: tuple[int, int], frame_shape: tuple[int, ...]):
    """The frame window a warped source rectangle lands in, and the map shifted into that window.

    Warping and blending only inside this window (not the whole frame) keeps a frame cheap.
    """
    h, w = src_shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m.T
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, frame_shape[1]), min(y1, frame_shape[0])
    if x1 <= x0 or y1 <= y0:
        return None, None
    shifted = m.copy()
    shifted[:, 2] -= (x0, y0)
    return (slice(y0, y1), slice(x0, x1)), shifted


def warp(img: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def composite(frame: np.ndarray, img: np.ndarray, alpha: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Warp a premultiplied canvas layer into the frame and blend it over (in place)."""
    roi, shifted = warp_roi(m, img.shape[:2], frame.shape)
    if roi is None:
        return frame
    size = (roi[1].stop - roi[1].start, roi[0].stop - roi[0].start)
    a = warp(alpha, shifted, size)
    frame[roi] = frame[roi] * (1 - a[..., None]) + warp(img, shifted, size)
    return frame


def render_scene(scene: Scene) -> list[np.ndarray]:
    """The clean (ungraded, noise-free) frames of the original video."""
    bases = [draw_base(t.ident, t.light, t.canvas) for t in scene.tracks]
    frames = []
    for i in range(scene.n_frames):
        frame = scene.background.copy()
        for track, base in zip(scene.tracks, bases):
            img, a = draw_face(base, track.canvas, track.ident, track.expression(i), track.light)
            frame = composite(frame, img, a, track.affine(i))
        frames.append(frame)
    return frames


def camera(scene: Scene, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Grade, blur, add sensor noise and JPEG round-trip: the same for an original and its fakes."""
    out = []
    for i, frame in enumerate(frames):
        f = frame * (scene.gain[i] * scene.tint).astype(np.float32)
        if scene.blur > MIN_BLUR:
            f = cv2.GaussianBlur(f, (0, 0), scene.blur)
        noise = np.empty((f.shape[0], f.shape[1] * 3), np.float32)  # one channel: randn's scalars
        cv2.setRNGSeed(scene.camera_seed + i)  # OpenCV's generator: fast, and seeded per frame
        cv2.randn(noise, 0.0, float(scene.noise))
        f = np.clip(f + noise.reshape(f.shape), 0, 255, out=f).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, scene.jpeg])
        if not ok:
            raise RuntimeError("JPEG encoding failed while simulating compression")
        out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR))  # BGR, ready for the video writer
    return out
