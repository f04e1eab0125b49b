"""On-disk layout of the face cache: one folder per FaceConfig hash, three files per video.

    <cache_dir>/<config hash>/config.json          the FaceConfig fields the hash covers
    <cache_dir>/<config hash>/<name>.npy           crops (n, S, S, 3) uint8 RGB   (crop_format npy)
    <cache_dir>/<config hash>/<name>.jpg/000000.jpg ...                           (crop_format jpg)
    <cache_dir>/<config hash>/<name>.faces.parquet the video's faces rows (absent when it has none)
    <cache_dir>/<config hash>/<name>.landmarks.npy (n, P, 2) float32 x, y per crop (faces.landmarks P)
    <cache_dir>/<config hash>/<name>.status.json   status row + source key: the "done" marker

Every file is written atomically, and the marker last: a video is done iff its marker exists and its
source key (file size, mtime) still matches, so a run killed at any moment and restarted redoes
exactly the unfinished videos and ends with the same files as an uninterrupted run.

Landmarks (`faces.landmarks`: 5 or 68 points, dlib's shape predictors; absent at the default 0)
are one array per video beside its crops, row i the landmarks of crop i (faces rows' `crop_idx`),
in the crop's pixels (x right, y down, pixel centres at integers; crop_size px wide). An array, not
faces-table columns: it is read as the crops are, per video and per crop (alignment, self-blending
and mouth learners read a crop and its points together), and the faces table keeps its flat scalar
columns. `landmarks_for_rows` gathers them for a faces or frames table.

Crop format: measured with `python -m benchmarks.faces --formats` on this 2-core machine (under
heavy load from other jobs; 6 embedded-corpus videos, the same crops written both ways):

    crop_size  format  crops  files  MB     write ms/crop  read ms/crop  mean abs error
    224        npy     182    6      26.1   0.38           0.22          0
    224        jpg     182    182    1.97   1.6            1.64          0.94  (quality 95)
    64         npy     46     6      0.54   0.21           0.22          0
    64         jpg     46     46     0.11   0.51           0.24          2.03

At the full profile's 380 px, on 256 real DFDC faces (`python -m benchmarks.scale`): npy 433 KB
a crop, jpg 24 KB (0.46 mean abs error; 27 KB on native crops of the generated 1080p videos); reading single crops in random order, as training does
(`locate` + `read_at`, features.faces.source), 0.05 ms (npy) and 0.67 ms (jpg) a crop. All of DFDC
(3.8M crops) is 1.65 TB as npy and ~0.09 TB as jpg, so the full profile caches jpg.

`npy` (one raw uint8 array per video) is the default: lossless (JPEG re-compression blurs exactly
the blending and resampling artefacts the detectors learn), one file per video (a folder of JPEGs
for DFDC x 32 frames would be ~4M files), 4-7x faster to write and up to 7x faster to read at 224 px,
which matters because every learner x fold reads every crop. JPEG is 5-13x smaller and stays
available (`crop_format: jpg`) for large crops on a small disk.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd

from features.common import Registry, atomic_write_json, atomic_write_parquet, atomic_write_with, config_hash

JPEG_QUALITY = 95  # high: JPEG artefacts must stay well below the deepfake artefacts we learn from
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
NAME_HASH_CHARS = 8
CONFIG_FILE = "config.json"


def video_name(video_id: str) -> str:
    """A file-system-safe stem for a video id (the id itself when it is already safe)."""
    if SAFE_NAME.match(video_id) and not video_id.startswith("."):
        return video_id
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", video_id).lstrip(".")[:100]
    return f"{cleaned}-{config_hash(video_id)[:NAME_HASH_CHARS]}"


def marker_path(crops_dir: Path, video_id: str) -> Path:
    return crops_dir / f"{video_name(video_id)}.status.json"


def faces_path(crops_dir: Path, video_id: str) -> Path:
    return crops_dir / f"{video_name(video_id)}.faces.parquet"


LANDMARKS_SUFFIX = ".landmarks.npy"


def landmarks_path(crops_dir: Path, video_id: str) -> Path:
    return crops_dir / f"{video_name(video_id)}{LANDMARKS_SUFFIX}"


# ---- crop formats -------------------------------------------------------------------------------

class CropStore:
    """How one video's crops are written and read back: all at once (`read`), or one crop at a time
    (`locate` once per video, then `read_at`), which is how training reads them (features.faces.source)."""

    def __init__(self, suffix: str, write: Callable[[Path, np.ndarray], None],
                 read: Callable[[Path, int], np.ndarray], locate: Callable[[Path, int], tuple[int, int]],
                 read_at: Callable[[Path, int, int, int], np.ndarray]):
        self.suffix, self._write, self._read = suffix, write, read
        self.locate, self.read_at = locate, read_at

    def path(self, crops_dir: Path, video_id: str) -> Path:
        return crops_dir / f"{video_name(video_id)}{self.suffix}"

    def write(self, crops_dir: Path, video_id: str, crops: np.ndarray) -> None:
        self._write(self.path(crops_dir, video_id), crops)

    def read(self, crops_dir: Path, video_id: str, size: int) -> np.ndarray:
        return self._read(self.path(crops_dir, video_id), size)


CROP_STORES: Registry[CropStore] = Registry("crop format")


def _write_npy(path: Path, crops: np.ndarray) -> None:
    atomic_write_with(path, lambda tmp: np.save(tmp, np.ascontiguousarray(crops, dtype=np.uint8)))


def _read_npy(path: Path, size: int) -> np.ndarray:
    return np.load(path)


def _write_jpg(path: Path, crops: np.ndarray) -> None:
    """A folder of JPEGs, made whole in a temp folder and renamed into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        for i, crop in enumerate(crops):
            bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(_jpg_file(tmp, i)), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                raise OSError(f"cannot write JPEG crop {i} under {tmp}")
        if path.exists():  # a leftover of a killed run (its marker was never written)
            shutil.rmtree(path)
        tmp.replace(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _read_jpg(path: Path, size: int) -> np.ndarray:
    files = sorted(path.glob("*.jpg"))
    if not files:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files])


NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _locate_npy(path: Path, size: int) -> tuple[int, int]:
    """(number of crops, byte offset of the first) from the .npy header, checked against the cache's
    crop size: a file of another shape or dtype is refused here, not misread later."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = NPY_HEADERS.get(version)
        if read_header is None:
            raise ValueError(f"{path}: .npy format version {version} is not one the face cache writes")
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype != np.uint8 or fortran or len(shape) != 4 or tuple(shape[1:]) != (size, size, 3):
        raise ValueError(f"{path}: crops of shape {shape} {dtype} (fortran={fortran}); the face cache "
                         f"holds ({size}, {size}, 3) uint8 crops in C order")
    return int(shape[0]), offset


def _read_npy_at(path: Path, offset: int, index: int, size: int) -> np.ndarray:
    """Crop `index` alone: one positioned read into a fresh array (no memory map to keep open)."""
    crop = np.empty((size, size, 3), np.uint8)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = os.preadv(fd, [crop], offset + index * crop.nbytes)
    finally:
        os.close(fd)
    if got != crop.nbytes:
        raise ValueError(f"{path}: crop {index} is cut short ({got} of {crop.nbytes} bytes)")
    return crop


def _jpg_file(path: Path, index: int) -> Path:
    return path / f"{index:06d}.jpg"


def _locate_jpg(path: Path, size: int) -> tuple[int, int]:
    return sum(1 for f in os.scandir(path) if f.name.endswith(".jpg")), 0


def _read_jpg_at(path: Path, offset: int, index: int, size: int) -> np.ndarray:
    image = cv2.imread(str(_jpg_file(path, index)), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{_jpg_file(path, index)}: unreadable JPEG crop")
    if image.shape != (size, size, 3):
        raise ValueError(f"{_jpg_file(path, index)}: a {image.shape} crop; the face cache holds ({size}, {size}, 3)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


CROP_STORES.register("npy")(CropStore(".npy", _write_npy, _read_npy, _locate_npy, _read_npy_at))
CROP_STORES.register("jpg")(CropStore(".jpg", _write_jpg, _read_jpg, _locate_jpg, _read_jpg_at))


# ---- per-video results ----------------------------------------------------------------------------

def write_config(crops_dir: Path, fields: dict) -> None:
    path = crops_dir / CONFIG_FILE
    if not path.exists():
        atomic_write_json(fields, path)


def read_config(crops_dir: Path) -> dict:
    path = Path(crops_dir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{crops_dir}: not a face cache folder (no {CONFIG_FILE})")
    return json.loads(path.read_text())


def write_result(crops_dir: Path, fmt: str, faces: pd.DataFrame, crops: np.ndarray, status: dict,
                 landmarks: np.ndarray | None = None) -> None:
    """Crops, landmarks (when given), then faces, then the marker (last, so its presence means the
    rest is whole)."""
    video_id = status["video_id"]
    marker_path(crops_dir, video_id).unlink(missing_ok=True)  # a stale result (source changed)
    CROP_STORES.get(fmt).write(crops_dir, video_id, crops)
    if landmarks is not None:
        if len(landmarks) != len(crops):
            raise ValueError(f"{video_id!r}: {len(landmarks)} landmark rows for {len(crops)} crops")
        atomic_write_with(landmarks_path(crops_dir, video_id),
                          lambda tmp: np.save(tmp, np.ascontiguousarray(landmarks, dtype=np.float32)))
    if len(faces):
        atomic_write_parquet(faces, faces_path(crops_dir, video_id))
    else:
        faces_path(crops_dir, video_id).unlink(missing_ok=True)
    atomic_write_json(status, marker_path(crops_dir, video_id))


def read_marker(crops_dir: Path, video_id: str) -> dict | None:
    path = marker_path(crops_dir, video_id)
    return json.loads(path.read_text()) if path.exists() else None


def read_faces(crops_dir: Path, video_id: str) -> pd.DataFrame | None:
    path = faces_path(crops_dir, video_id)
    return pd.read_parquet(path) if path.exists() else None


def landmark_points(crops_dir: Path) -> int:
    """Landmark points per face the cache at `crops_dir` holds (0: none, the config asked for none)."""
    return int(read_config(crops_dir).get("landmarks", 0))


def read_landmarks(crops_dir: Path, video_id: str) -> np.ndarray:
    """(n, P, 2) float32 landmarks of one video's crops (row i = crop_idx i), in crop pixels."""
    path = landmarks_path(Path(crops_dir), video_id)
    if not path.exists():
        points = landmark_points(Path(crops_dir))
        why = "it was made without landmarks (faces.landmarks: 0)" if not points else "not extracted yet"
        raise FileNotFoundError(f"{path}: no landmarks for video {video_id!r}: {why}; set faces.landmarks "
                                "to 5 or 68 and run the face stage")
    return np.load(path)


def landmarks_for_rows(rows: pd.DataFrame, crops_dir: Path | str) -> np.ndarray:
    """(N, P, 2) landmarks of a table's rows (columns video_id, crop_idx: a faces or frames table),
    in its row order; each video's file is read once."""
    crops_dir = Path(crops_dir)
    points = landmark_points(crops_dir)
    out = np.zeros((len(rows), points, 2), np.float32)
    crop_idx = rows["crop_idx"].to_numpy(np.int64)
    for video_id, where in rows.groupby(rows["video_id"].astype(str), sort=False).indices.items():
        per_video = read_landmarks(crops_dir, video_id)
        if len(where) and crop_idx[where].max() >= len(per_video):
            raise ValueError(f"{landmarks_path(crops_dir, video_id)}: {len(per_video)} rows, the table wants "
                             f"crop {crop_idx[where].max()} of {video_id!r}")
        out[where] = per_video[crop_idx[where]]
    return out
