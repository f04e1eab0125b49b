"""Face detection (facenet-pytorch MTCNN) on sampled frames, and square face crops.

One function, `detect_faces`, runs detection for every caller (training, prediction, benchmark) from
one `FaceConfig`, so the thresholds, minimum face size and downscale can never drift apart between
the data a model was trained on and the data it scores.

Speed comes from: frames downscaled before detection (`detection_scale`; frames where that finds
no face are retried at full resolution, so the downscale costs no detections), frames of equal size
going through MTCNN as one batch, MTCNN in channels-last memory (its max-pools are ~2.5x faster
that way on CPU), and only the sampled frames being decoded to RGB and detected at all. `min_face_size` is in full-resolution pixels; it is
converted to detection pixels (never below P-Net's 12-pixel window), so the same config finds the
same faces whatever the downscale.

Crops: a square of side `max(w, h) * (1 + 2 * margin)` centred on the box. Near the frame edge the
square is SHIFTED inside the frame rather than padded: padding would paint black borders whose size
depends on where the face sits, an artefact unrelated to fakeness that a CNN could learn, while
shifting keeps real pixels and still contains the whole box. Only when the square is larger than the
frame's short side is it shrunk to that side.

Detectors (`faces.detector`, the DETECTORS registry): `mtcnn` (facenet-pytorch, the default and the
behaviour every cache before the registry was made with), `dlib_hog` and `dlib_mmod` (dlib's HOG and
CNN face detectors, features.faces.dlib_models). The DFDC report this project grew from compared
four detectors for the same job; `python -m benchmarks.faces --detectors mtcnn dlib_hog dlib_mmod`
measures these side by side. dlib's detectors answer margins, not probabilities (an SVM margin for
HOG, a CNN confidence for MMOD, both > 0 for a face, unbounded above): their own threshold (0, the
trained operating point) decides what is a face, every box they return gets det_prob
DLIB_DET_PROB = 1.0 so `det_prob` drops none of them (mapping margins through a sigmoid would
drop every box with margin < 2.2 at det_prob 0.9, silently), and boxes are ordered by margin, so
`max_faces` still keeps the strongest. `min_face_size` picks how often dlib upsamples the frame
(its detectors see faces of about DLIB_FACE_WINDOW px and up; each upsample halves that, at ~4x
the time): with dlib, set `detect_scale` so the faces stay near 80 px rather than downscaling a
frame only to upsample it again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from features.common import Registry
from features.devices import resolve_device
from features.faces.config import FaceConfig
from features.faces.tracking import greedy_pairs, iou_matrix

log = logging.getLogger(__name__)

MTCNN_MIN_WINDOW = 12  # P-Net's input window: the smallest face MTCNN can see, in detection pixels
MAX_SCALE = 1.0  # never upsample frames for detection: it costs time and finds no extra real faces


@dataclass
class Detections:
    """Faces of one frame, in full-resolution pixels of the upright frame, best first."""

    boxes: np.ndarray  # (k, 4) float64 x0, y0, x1, y1
    probs: np.ndarray  # (k,) float64
    carried: bool = False  # interpolated between two keyframes' detections (detect_every > 1)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0))


DETECTORS: Registry[Callable[[FaceConfig], object]] = Registry("face detector")


def build_detector(cfg: FaceConfig):
    """The detector `cfg.detector` names, configured from `cfg` (unknown names list the valid ones).

    Every registered detector offers MTCNN's interface, which `detect_faces` relies on:
    `detect(batch)` on an (n, h, w, 3) uint8 RGB batch -> (boxes per frame, probabilities per frame),
    None for a frame without faces, and a settable `min_face_size` in detection pixels."""
    return DETECTORS.get(cfg.detector)(cfg)


@DETECTORS.register("mtcnn")
def build_mtcnn(cfg: FaceConfig):
    """MTCNN configured from `cfg`. keep_all/probability order: we select and track faces ourselves."""
    from facenet_pytorch import MTCNN  # heavy import, deferred to the processes that detect

    detector = MTCNN(
        keep_all=True, select_largest=False, post_process=False,
        min_face_size=max(MTCNN_MIN_WINDOW, cfg.min_face_size),
        thresholds=list(cfg.thresholds), factor=cfg.factor, device=resolve_device(cfg.device),
    ).eval()
    if cfg.channels_last:  # frames arrive as NHWC; keeping that layout speeds up every pooling layer
        detector = detector.to(memory_format=torch.channels_last)
    return detector


DLIB_DET_PROB = 1.0  # every box a dlib detector returns passed its own threshold (module docstring)
DLIB_FACE_WINDOW = 80  # px: the smallest face dlib's HOG and MMOD detectors find without upsampling
DLIB_MAX_UPSAMPLE = {"dlib_hog": 2, "dlib_mmod": 1}  # each upsample costs ~4x; MMOD is ~10x HOG already


def dlib_upsample(min_face_size: float, most: int) -> int:
    """Upsampling steps (x2 each) so faces of `min_face_size` detection pixels reach dlib's window,
    at most `most`: 0 for faces of 80 px and up, 1 down to 40 px (dlib's examples' default)."""
    if min_face_size >= DLIB_FACE_WINDOW:
        return 0
    return min(most, math.ceil(math.log2(DLIB_FACE_WINDOW / max(min_face_size, 1.0))))


class DlibDetector:
    """A dlib detector (features.faces.dlib_models) behind MTCNN's interface: frames one at a time
    (dlib has no batches), boxes ordered by dlib's margin, each with det_prob DLIB_DET_PROB."""

    def __init__(self, name: str, make: Callable[[int], Callable], min_face_size: float):
        self.name, self._make, self.min_face_size = name, make, float(min_face_size)
        self._by_upsample: dict[int, Callable] = {}  # built lazily: MMOD loads its weights once per setting

    def _detector(self) -> Callable:
        upsample = dlib_upsample(self.min_face_size, DLIB_MAX_UPSAMPLE[self.name])
        if upsample not in self._by_upsample:
            log.debug("%s: building with upsample %d (min face %.0f px)", self.name, upsample, self.min_face_size)
            self._by_upsample[upsample] = self._make(upsample)
        return self._by_upsample[upsample]

    def detect(self, batch: np.ndarray) -> tuple[list, list]:
        detect = self._detector()
        all_boxes, all_probs = [], []
        for frame in batch:
            boxes, scores = detect(frame)
            if len(boxes) == 0:
                all_boxes.append(None)
                all_probs.append(None)
                continue
            order = np.argsort(-scores, kind="stable")
            all_boxes.append(boxes[order].astype(np.float64))
            all_probs.append(np.full(len(boxes), DLIB_DET_PROB))
        return all_boxes, all_probs


@DETECTORS.register("dlib_hog")
def build_dlib_hog(cfg: FaceConfig) -> DlibDetector:
    """dlib's frontal HOG detector: cheap on a CPU, frontal faces only (features.faces.dlib_models)."""
    from features.faces.dlib_models import hog_detector

    return DlibDetector("dlib_hog", lambda upsample: hog_detector(upsample=upsample),
                        max(MTCNN_MIN_WINDOW, cfg.min_face_size))


@DETECTORS.register("dlib_mmod")
def build_dlib_mmod(cfg: FaceConfig) -> DlibDetector:
    """dlib's CNN (MMOD) detector: profile and occluded faces too, ~10x HOG's CPU time."""
    from features.faces.dlib_models import mmod_detector

    return DlibDetector("dlib_mmod", lambda upsample: mmod_detector(upsample=upsample),
                        max(MTCNN_MIN_WINDOW, cfg.min_face_size))


def detection_scale(height: int, width: int, cfg: FaceConfig) -> float:
    """Downscale factor for a frame: `detect_scale`, lowered so the long side fits `detect_max_side`."""
    scale = cfg.detect_scale
    if cfg.detect_max_side:
        scale = min(scale, cfg.detect_max_side / max(height, width))
    return min(scale, MAX_SCALE)


def _filter(boxes, probs, height: int, width: int, cfg: FaceConfig) -> Detections:
    """Clip to the frame, drop weak or degenerate boxes, keep the `max_faces` most probable."""
    if boxes is None or len(boxes) == 0:
        return Detections.empty()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    keep = (probs >= cfg.det_prob) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, probs = boxes[keep], probs[keep]
    order = np.argsort(-probs, kind="stable")[: cfg.max_faces]
    return Detections(boxes[order], probs[order])


def _detect_at(detector, frames: list[np.ndarray], scale: float, cfg: FaceConfig) -> list[Detections]:
    """Detect faces in equal-size frames resized by `scale`, in batches of `cfg.batch_size`."""
    height, width = frames[0].shape[:2]
    dw, dh = max(1, round(width * scale)), max(1, round(height * scale))
    min_face = max(MTCNN_MIN_WINDOW, cfg.min_face_size * scale)
    if min(dw, dh) < min_face:  # MTCNN's pyramid would be empty (and it crashes on that)
        return [Detections.empty() for _ in frames]
    detector.min_face_size = min_face
    small = frames if (dw, dh) == (width, height) else [
        cv2.resize(f, (dw, dh), interpolation=cv2.INTER_AREA) for f in frames
    ]
    back = np.array([width / dw, height / dh, width / dw, height / dh])  # detection px -> full px
    out = []
    for start in range(0, len(small), cfg.batch_size):
        batch = np.stack(small[start : start + cfg.batch_size])
        batch_boxes, batch_probs = detector.detect(batch)
        for boxes, probs in zip(batch_boxes, batch_probs):
            mapped = None if boxes is None else np.asarray(boxes, dtype=np.float64) * back
            out.append(_filter(mapped, probs, height, width, cfg))
    return out


def _detect_same_size(detector, frames: list[np.ndarray], cfg: FaceConfig) -> list[Detections]:
    """Downscaled detection; frames where it finds nothing are retried at full resolution.

    A face of 40 detection pixels reaches MTCNN's last stage (48 px input) blurred, and its
    probability can sink just below `det_prob`. Retrying only the empty frames keeps the speed of
    the downscale on the common case and loses no face to it (`retry_full_res`).
    """
    height, width = frames[0].shape[:2]
    scale = detection_scale(height, width, cfg)
    out = _detect_at(detector, frames, scale, cfg)
    if cfg.retry_full_res and scale < MAX_SCALE:
        empty = [i for i, det in enumerate(out) if len(det.probs) == 0]
        if empty:
            for i, det in zip(empty, _detect_at(detector, [frames[i] for i in empty], MAX_SCALE, cfg)):
                out[i] = det
    return out


def detect_faces(detector, frames: list[np.ndarray], cfg: FaceConfig) -> list[Detections]:
    """Faces of each RGB frame of one video (full-res boxes, best first), in sampling order.

    With `detect_every` k > 1, MTCNN runs on every k-th frame and the last (the keyframes). Between
    two keyframes whose faces pair up one to one with IoU >= `carry_iou` (the same faces, barely
    moved), boxes are interpolated linearly along each pair and take the lower of the two
    probabilities; anywhere else (a face appears, leaves, or moves fast, or no face at all) the
    frames in between are detected too, so carrying never loses a face a keyframe did not see.
    """
    k = cfg.detect_every
    if k <= 1 or len(frames) <= 2:
        return _detect_frames(detector, frames, cfg)
    keys = sorted(set(range(0, len(frames), k)) | {len(frames) - 1})
    out: dict[int, Detections] = dict(zip(keys, _detect_frames(detector, [frames[i] for i in keys], cfg)))
    redo = []
    for a, b in zip(keys, keys[1:]):
        pairs = _carry_pairs(out[a], out[b], cfg.carry_iou)
        for i in range(a + 1, b):
            if pairs is None:
                redo.append(i)
            else:
                out[i] = _interpolate(out[a], out[b], pairs, (i - a) / (b - a))
    for i, det in zip(redo, _detect_frames(detector, [frames[i] for i in redo], cfg)):
        out[i] = det
    return [out[i] for i in range(len(frames))]


def _carry_pairs(a: Detections, b: Detections, min_iou: float) -> list[tuple[int, int]] | None:
    """Index pairs matching every face of `a` to one of `b` with IoU >= min_iou, or None."""
    if len(a.probs) == 0 or len(a.probs) != len(b.probs):
        return None
    pairs = greedy_pairs(iou_matrix(a.boxes, b.boxes), min_iou)
    return pairs if len(pairs) == len(a.probs) else None


def _interpolate(a: Detections, b: Detections, pairs: list[tuple[int, int]], t: float) -> Detections:
    boxes = np.stack([(1 - t) * a.boxes[i] + t * b.boxes[j] for i, j in pairs])
    probs = np.array([min(a.probs[i], b.probs[j]) for i, j in pairs])
    order = np.argsort(-probs, kind="stable")
    return Detections(boxes[order], probs[order], carried=True)


def _detect_frames(detector, frames: list[np.ndarray], cfg: FaceConfig) -> list[Detections]:
    """Every frame detected; frames of equal size batch together."""
    out: list[Detections | None] = [None] * len(frames)
    by_shape: dict[tuple, list[int]] = {}
    for i, frame in enumerate(frames):
        by_shape.setdefault(frame.shape[:2], []).append(i)
    for indices in by_shape.values():
        found = _detect_same_size(detector, [frames[i] for i in indices], cfg)
        for i, det in zip(indices, found):
            out[i] = det
    return out  # type: ignore[return-value]


def square_box(box, margin: float, height: int, width: int) -> tuple[int, int, int]:
    """(x0, y0, side) of the square crop around `box`, shifted (not padded) to lie inside the frame."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    side = int(round(min(max(side, 1.0), height, width)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(round(cx - side / 2))
    top = int(round(cy - side / 2))
    left = min(max(left, 0), width - side)
    top = min(max(top, 0), height - side)
    return left, top, side


def crop_face(frame: np.ndarray, box, margin: float, size: int) -> np.ndarray:
    """The square crop of `box` with `margin`, resized to `size` x `size` (uint8, frame's channels)."""
    height, width = frame.shape[:2]
    left, top, side = square_box(box, margin, height, width)
    patch = frame[top : top + side, left : left + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def to_crop_pixels(points: np.ndarray, box, margin: float, size: int, height: int, width: int) -> np.ndarray:
    """Frame-pixel points (k, 2) -> the pixels of `crop_face`'s crop of `box`: the square's offset
    removed and scaled to `size`, with cv2.resize's pixel-centre convention (x + 0.5) * s - 0.5, so a
    point on a pixel's centre in the frame lands on the centre of what that pixel became."""
    left, top, side = square_box(box, margin, height, width)
    scale = size / side
    return ((np.asarray(points, np.float64) - (left, top) + 0.5) * scale - 0.5).astype(np.float32)


def crop_landmarks(frame: np.ndarray, boxes: np.ndarray, cfg: FaceConfig) -> np.ndarray:
    """dlib's `cfg.landmarks`-point landmarks of each box, (k, P, 2) float32 in its crop's pixels.

    The shape predictor regresses from the box it is given; it was trained on boxes of dlib's HOG
    detector, and MTCNN's are a little taller (forehead to chin), which costs it some accuracy, not
    the face (it answers for any box: the detector's threshold is what decides there is a face).
    The 68-point model is trained on iBUG 300-W, licensed for research use only."""
    from features.faces.dlib_models import landmarks  # dlib: imported where landmarks are asked for

    height, width = frame.shape[:2]
    points = landmarks(np.ascontiguousarray(frame), np.asarray(boxes, np.float32), points=cfg.landmarks)
    return np.stack([to_crop_pixels(p, box, cfg.margin, cfg.crop_size, height, width)
                     for p, box in zip(points, boxes)]) if len(points) else points
