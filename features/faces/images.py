"""Pre-extracted faces into the face cache: the face stage for corpora that ship crops, not videos.

Each video's face images (one per video in the Kaggle "deepfake-faces" form, or up to `n_frames`
of a folder of frames per video) are read, converted to RGB, resized to the profile's `crop_size`
with area interpolation and written to the same cache layout `extract_faces` writes, so level 0
reads them unchanged (`load_crops`). Detection is skipped:
the image is the face, its box is the whole image and its detection probability 1. An image that
cannot be read gets `decode_error`, an absent one `missing_file`; finished videos are skipped on
reruns (keyed by the settings and the image file's size and time). `workers` processes share the
videos (0: one per core), as in the face stage.

Landmarks (`faces.landmarks` 5 or 68) come from dlib's shape predictor run on each image at its own
resolution, with the face box assumed where this project's own crops put it: the central
1 / (1 + 2 * margin) of the image (features.faces.detect.crop_face), so no detector runs here
either; they are cached in the crop's pixels like the face stage's (features.faces.cache). The
68-point model's training data (iBUG 300-W) is licensed for research use only.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features.common import config_hash
from features.corpus.face_csv import IMAGE_EXTENSIONS
from features.engines import LOCAL_ENGINE, Engine, Resources
from features.faces import cache
from features.faces.config import NO_LANDMARKS, SINGLE_FRAME_CLIPS, FaceConfig
from features.faces.decode import clip_indices
from features.faces.extract import (
    CACHE_VERSION,
    FACE_COLUMNS,
    FaceResult,
    collect_results,
    dense_rank,
    is_done,
    source_key,
    status_row,
    visible_or_raise,
)
from features.faces.pool import n_workers

SOURCE = "face_images"  # in the cache key: these crops were never detected here
PRELOAD = ["features.faces.images"]  # imported once by the forkserver
GIVEN_DET_PROB = 1.0  # the image is the face
IMAGES_PER_TASK = 64  # a distributed engine's task: one image is milliseconds of work


def cache_fields(cfg: FaceConfig) -> dict:
    """What decides the imported crops (load_crops reads crop_format and crop_size back)."""
    clips = {} if cfg.clip_len == SINGLE_FRAME_CLIPS else {"clip_len": cfg.clip_len}
    # landmarks (and the margin that places their box) only when asked for: older keys stay valid
    points = {} if cfg.landmarks == NO_LANDMARKS else {"landmarks": cfg.landmarks, "margin": cfg.margin}
    return {"source": SOURCE, "crop_size": cfg.crop_size, "crop_format": cfg.crop_format,
            "n_frames": cfg.n_frames, **clips, **points, "cache_version": CACHE_VERSION}


def assumed_face_box(height: int, width: int, margin: float) -> np.ndarray:
    """(1, 4) x0, y0, x1, y1: the face's box in an imported face image, the central
    1 / (1 + 2 * margin) of each side, where this project's own crops have it."""
    share = 1.0 / (1.0 + 2.0 * margin)
    dx, dy = width * (1 - share) / 2, height * (1 - share) / 2
    return np.array([[dx, dy, width - dx, height - dy]], np.float32)


def image_landmarks(rgb: np.ndarray, cfg: FaceConfig) -> np.ndarray:
    """(P, 2) float32 landmarks of an imported face image, in the pixels of its crop_size crop
    (the resize's pixel-centre convention, as features.faces.detect.to_crop_pixels)."""
    from features.faces.dlib_models import landmarks  # dlib: only where landmarks are asked for

    height, width = rgb.shape[:2]
    points = landmarks(rgb, assumed_face_box(height, width, cfg.margin), points=cfg.landmarks)[0]
    scale = np.array([cfg.crop_size / width, cfg.crop_size / height])
    return ((points + 0.5) * scale - 0.5).astype(np.float32)


def image_files(folder: Path) -> list[Path]:
    """A folder's images in name order (the frames of one video, as a face set stores them)."""
    return sorted(f for f in Path(folder).iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)


def _frame_files(path: Path, n_frames: int, clip_len: int) -> tuple[list[Path], list[int]]:
    """The images to import and the clip of each: the file itself, or `n_frames` of a folder's
    images evenly spaced over them in name order (the frames of one video, as a face set stores
    them), in clips of `clip_len` neighbouring images."""
    if path.is_file():
        return [path], [0]
    files = image_files(path)
    idx, clips = clip_indices(len(files), n_frames, clip_len)
    return [files[i] for i in idx], clips


def _import_one(video_id: str, path: Path, cfg: FaceConfig, crops_dir: Path) -> None:
    visible_or_raise(path)
    rows, crops, points, unreadable = [], [], [], []
    files, clips = _frame_files(path, cfg.n_frames, cfg.clip_len)
    for frame_idx, (file, clip) in enumerate(zip(files, clips)):
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            unreadable.append(file.name)
            continue
        h, w = image.shape[:2]
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        crops.append(cv2.resize(rgb, (cfg.crop_size, cfg.crop_size), interpolation=cv2.INTER_AREA))
        if cfg.landmarks != NO_LANDMARKS:
            points.append(image_landmarks(rgb, cfg))
        rows.append({"video_id": video_id, "frame_idx": frame_idx, "face_idx": 0, "x0": 0.0, "y0": 0.0,
                     "x1": float(w), "y1": float(h), "det_prob": GIVEN_DET_PROB, "crop_idx": len(rows),
                     "clip_idx": clip})
    faces = pd.DataFrame(rows, columns=list(FACE_COLUMNS)).astype(FACE_COLUMNS)
    faces["clip_idx"] = dense_rank(faces["clip_idx"])
    note = f"unreadable image(s): {', '.join(unreadable)}" if unreadable else ""
    if not rows:
        status = status_row(video_id, "decode_error", "; ".join(filter(None, [f"{path}: no readable face image", note])),
                            n_frames=len(files))
        stack = np.zeros((0, cfg.crop_size, cfg.crop_size, 3), np.uint8)
    else:
        status = status_row(video_id, "ok", "; ".join(filter(None, ["pre-extracted face images", note])),
                            n_frames=len(files), n_faces=len(rows))
        stack = np.stack(crops)
    status["source"] = source_key(path)
    landmarks = None
    if cfg.landmarks != NO_LANDMARKS:
        landmarks = np.stack(points) if points else np.zeros((0, cfg.landmarks, 2), np.float32)
    cache.write_result(crops_dir, cfg.crop_format, faces, stack, status, landmarks)


def import_faces(videos: pd.DataFrame, cfg: FaceConfig, cache_dir: Path | str, progress: bool = True,
                 engine: Engine = LOCAL_ENGINE) -> FaceResult:
    """Faces and status of every row of `videos` (video_id, root, path = the face image)."""
    cache.CROP_STORES.get(cfg.crop_format)  # unknown format: fail before any work
    crops_dir = Path(cache_dir) / config_hash(cache_fields(cfg))
    crops_dir.mkdir(parents=True, exist_ok=True)
    cache.write_config(crops_dir, cache_fields(cfg))
    missing, todo = {}, []
    for row in videos.itertuples(index=False):
        path = Path(str(row.root)) / str(row.path)
        if not str(row.path) or not path.exists():
            missing[row.video_id] = status_row(row.video_id, "missing_file", f"{path}: no such face image")
        elif not is_done(crops_dir, row.video_id, path):
            todo.append((row.video_id, path))
    workers = n_workers(cfg.workers, len(todo))
    with tqdm(total=len(todo), desc="face images", unit="video", disable=not progress) as bar:
        if workers == 1 and not engine.distributed:
            for video_id, path in todo:
                _import_one(video_id, path, cfg, crops_dir)
                bar.update()
        else:  # decoding, resizing and the cache writes are per video: processes scale them
            tasks = [(video_id, path, cfg, crops_dir) for video_id, path in todo]
            resources = [Resources()] * len(tasks) if engine.distributed else None
            for _ in engine.map(_import_one, tasks, workers, _init_worker, (), PRELOAD, resources,
                                IMAGES_PER_TASK):
                bar.update()
    return collect_results(videos["video_id"].tolist(), missing, crops_dir)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already
