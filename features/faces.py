"""Face extraction stage: videos table -> faces table + per-video status + cached crops.

    decode (features.decode) -> detect (features.detect) -> track (features.tracking) -> crop -> cache

`extract_faces` accounts for every input video with exactly one status row: `ok`, `no_face`,
`decode_error` or `missing_file`, with a message. Finished videos are cached per FaceConfig hash
(features.face_cache) and skipped on re-runs; the work runs in a process pool, one MTCNN per worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from features import face_cache
from features.common import ConfigError, config_hash, to_dict
from features.pool import n_workers, process_map
from features.decode import DecodeError, read_frames
from features.detect import build_detector, crop_face, detect_faces
from features.tracking import link_tracks

CACHE_VERSION = 1  # bump when the cached files change meaning; part of the cache key
STATUSES = ("ok", "no_face", "decode_error", "missing_file")
FACE_COLUMNS = {
    "video_id": "string", "frame_idx": "int64", "face_idx": "int64", "x0": "float64", "y0": "float64",
    "x1": "float64", "y1": "float64", "det_prob": "float64", "crop_idx": "int64",
}
STATUS_COLUMNS = {
    "video_id": "string", "status": "string", "message": "string", "n_frames": "int64",
    "n_faces": "int64", "n_stream": "int64", "rotation": "int64",
}
RUNTIME_FIELDS = ("workers", "decode_threads")  # do not change a single bit of the results
# torch threads per detecting process, whatever the worker count: MTCNN's float results differ in the
# last bits between thread counts (and between batch compositions, hence batch_size is in the cache
# key), and that would make a cache filled with workers=1 differ from one filled by a pool. Parallelism
# comes from processes (workers=0: one per core, see features.pool) instead.
DETECT_THREADS = 1
PRELOAD = ["features.faces", "facenet_pytorch"]  # imported once by the forkserver


@dataclass
class FaceConfig:
    """Every setting of the face stage. The fields outside RUNTIME_FIELDS form the cache key."""

    n_frames: int = 32  # frames sampled evenly over each video (DFDC winners used 32)
    detect_scale: float = 0.5  # downscale before detection (0.5 suits 1080p)
    detect_max_side: int | None = None  # also cap the long side at this many pixels (mixed resolutions)
    retry_full_res: bool = True  # re-detect frames where the downscaled pass found no face at full res
    min_face_size: int = 40  # smallest face searched, in full-resolution pixels
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # MTCNN P-/R-/O-Net thresholds
    factor: float = 0.709  # MTCNN pyramid step
    det_prob: float = 0.9  # faces below this detection probability are dropped
    max_faces: int = 2  # faces kept per frame, most probable first
    track_iou: float = 0.3  # IoU that links a box to a track of an earlier frame
    margin: float = 0.25  # crop square side = longer box side * (1 + 2 * margin)
    crop_size: int = 224  # crops are resized to crop_size x crop_size
    crop_format: str = "npy"  # features.face_cache.CROP_STORES: npy | jpg
    batch_size: int = 32  # frames per MTCNN call
    channels_last: bool = True  # MTCNN in channels-last memory: ~1.6x faster on CPU (its max-pools)
    workers: int = 0  # processes; 0 = one per core; 1 = in this process
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    decode_threads: int = 1  # FFmpeg threads per worker (workers already fill the cores)

    def __post_init__(self) -> None:
        checks = {
            "n_frames >= 1": self.n_frames >= 1, "0 < detect_scale": self.detect_scale > 0,
            "min_face_size >= 1": self.min_face_size >= 1, "3 thresholds": len(self.thresholds) == 3,
            "0 < factor < 1": 0 < self.factor < 1, "0 <= det_prob <= 1": 0 <= self.det_prob <= 1,
            "max_faces >= 1": self.max_faces >= 1, "margin >= 0": self.margin >= 0,
            "crop_size >= 1": self.crop_size >= 1, "batch_size >= 1": self.batch_size >= 1,
            "workers >= 0": self.workers >= 0,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ConfigError(f"FaceConfig: {', '.join(failed)} violated in {self}")


@dataclass
class FaceResult:
    faces: pd.DataFrame
    status: pd.DataFrame
    crops_dir: Path


def cache_fields(cfg: FaceConfig) -> dict:
    """The settings that change what is extracted (runtime knobs left out), plus the cache version."""
    fields = {k: v for k, v in to_dict(cfg).items() if k not in RUNTIME_FIELDS}
    return {**fields, "cache_version": CACHE_VERSION}


def crops_dir_for(cache_dir: Path | str, cfg: FaceConfig) -> Path:
    return Path(cache_dir) / config_hash(cache_fields(cfg))


def load_crops(crops_dir: Path | str, video_id: str) -> np.ndarray:
    """(n, S, S, 3) uint8 RGB crops of one video; row i is the faces row with crop_idx == i."""
    crops_dir = Path(crops_dir)
    fields = face_cache.read_config(crops_dir)
    if face_cache.read_marker(crops_dir, video_id) is None:
        raise FileNotFoundError(
            f"{crops_dir}: no finished face extraction for video {video_id!r} (see face_status)"
        )
    store = face_cache.CROP_STORES.get(fields["crop_format"])
    return store.read(crops_dir, video_id, fields["crop_size"])


# ---- one video ------------------------------------------------------------------------------------

def _status(video_id: str, status: str, message: str, n_frames=0, n_faces=0, n_stream=0, rotation=0):
    if status not in STATUSES:
        raise ValueError(f"unknown face status {status!r}; valid: {STATUSES}")
    return dict(video_id=video_id, status=status, message=message, n_frames=int(n_frames),
                n_faces=int(n_faces), n_stream=int(n_stream), rotation=int(rotation))


def faces_of_video(video_id: str, path: Path, cfg: FaceConfig, detector):
    """Decode, detect, track and crop one video -> (faces rows, crops array, status dict).

    Bad input becomes a status, never an exception; bugs still raise.
    """
    empty = np.zeros((0, cfg.crop_size, cfg.crop_size, 3), np.uint8)
    try:
        frames = read_frames(path, cfg.n_frames, threads=cfg.decode_threads)
    except FileNotFoundError as err:
        return _empty_faces(), empty, _status(video_id, "missing_file", str(err))
    except (DecodeError, cv2.error) as err:
        return _empty_faces(), empty, _status(video_id, "decode_error", str(err))
    dets = detect_faces(detector, frames.images, cfg)
    info = dict(n_frames=len(frames.images), n_stream=frames.n_stream, rotation=frames.rotation)
    notes = "; ".join(frames.notes)
    faces, crops = _faces_and_crops(video_id, frames, dets, cfg)
    if faces.empty:
        msg = f"no face with det_prob >= {cfg.det_prob} in {len(frames.images)} sampled frames"
        return faces, crops, _status(video_id, "no_face", "; ".join(filter(None, [msg, notes])), **info)
    return faces, crops, _status(video_id, "ok", notes, n_faces=len(faces), **info)


def _faces_and_crops(video_id: str, frames, dets, cfg: FaceConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """Faces rows (tracked, ordered by frame then face_idx, crop_idx = row) and their crops."""
    rows, crops = [], []
    for image, fidx, det in zip(frames.images, frames.frame_idx, dets):
        for box, prob in zip(det.boxes, det.probs):
            rows.append((fidx, *box, prob))
            crops.append(crop_face(image, box, cfg.margin, cfg.crop_size))
    if not rows:
        return _empty_faces(), np.zeros((0, cfg.crop_size, cfg.crop_size, 3), np.uint8)
    faces = pd.DataFrame(rows, columns=["frame_idx", "x0", "y0", "x1", "y1", "det_prob"])
    boxes = faces[["x0", "y0", "x1", "y1"]]
    faces["face_idx"] = link_tracks(faces["frame_idx"], boxes, faces["det_prob"], cfg.track_iou)
    faces.insert(0, "video_id", video_id)
    order = faces.sort_values(["frame_idx", "face_idx"], kind="stable").index.to_numpy()
    faces = faces.loc[order].reset_index(drop=True)
    faces["crop_idx"] = np.arange(len(faces), dtype=np.int64)
    return faces[list(FACE_COLUMNS)].astype(FACE_COLUMNS), np.stack([crops[i] for i in order])


def _empty_faces() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in FACE_COLUMNS.items()})


def source_key(path: Path) -> dict:
    """Identifies the input file's content cheaply: a changed file is re-extracted."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def process_and_store(video_id: str, path: str, cfg: FaceConfig, crops_dir: str, detector) -> dict:
    faces, crops, status = faces_of_video(video_id, Path(path), cfg, detector)
    status["source"] = source_key(Path(path)) if Path(path).is_file() else None
    face_cache.write_result(Path(crops_dir), cfg.crop_format, faces, crops, status)
    return status


# ---- process pool ---------------------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(cfg: FaceConfig) -> None:
    """Pool initializer: bound the threads of torch/OpenCV, build MTCNN once per process."""
    torch.set_num_threads(DETECT_THREADS)
    cv2.setNumThreads(DETECT_THREADS)
    _WORKER["cfg"] = cfg
    _WORKER["detector"] = build_detector(cfg)


def _work(video_id: str, path: str, crops_dir: str) -> dict:
    return process_and_store(video_id, path, _WORKER["cfg"], crops_dir, _WORKER["detector"])


def _run(todo: list[tuple[str, str]], cfg: FaceConfig, crops_dir: Path, progress: bool) -> None:
    workers = n_workers(cfg.workers, len(todo))
    bar = tqdm(total=len(todo), desc="faces", unit="video", disable=not progress)
    if workers == 1:
        detector = build_detector(cfg)
        threads = torch.get_num_threads()
        torch.set_num_threads(DETECT_THREADS)
        try:
            for video_id, path in todo:
                process_and_store(video_id, path, cfg, str(crops_dir), detector)
                bar.update()
        finally:
            torch.set_num_threads(threads)
    else:
        tasks = [(vid, path, str(crops_dir)) for vid, path in todo]
        for _ in process_map(_work, tasks, workers, _init_worker, (cfg,), PRELOAD):
            bar.update()  # finished videos stay cached if a later one fails
    bar.close()


# ---- the stage --------------------------------------------------------------------------------------

REQUIRED_COLUMNS = ("video_id", "root", "path")


def _check_videos(videos: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in videos.columns]
    if missing:
        raise ValueError(f"videos table lacks column(s) {missing}; has {list(videos.columns)}")
    dup = videos["video_id"][videos["video_id"].duplicated()].unique()
    if len(dup):
        raise ValueError(f"videos table has duplicate video_id(s): {list(dup[:5])}")


def _is_done(crops_dir: Path, video_id: str, path: Path) -> bool:
    marker = face_cache.read_marker(crops_dir, video_id)
    return marker is not None and marker.get("source") == source_key(path)


def extract_faces(videos: pd.DataFrame, cfg: FaceConfig, cache_dir: Path | str,
                  progress: bool = True) -> FaceResult:
    """Faces and status of every video in `videos` (columns video_id, root, path; optional status).

    Videos already extracted with the same settings (and unchanged files) are read from the cache;
    the rest run in a process pool. Missing files get status `missing_file` and are not cached, so
    they are picked up once they appear.
    """
    _check_videos(videos)
    face_cache.CROP_STORES.get(cfg.crop_format)  # unknown format: fail before any work
    crops_dir = crops_dir_for(cache_dir, cfg)
    crops_dir.mkdir(parents=True, exist_ok=True)
    face_cache.write_config(crops_dir, cache_fields(cfg))
    marked = videos["status"].eq("missing_file").fillna(False) if "status" in videos else None
    missing, todo = {}, []
    for i, row in enumerate(videos.itertuples(index=False)):
        path = Path(str(row.root)) / str(row.path)
        if (marked is not None and bool(marked.iloc[i])) or not path.is_file():
            missing[row.video_id] = _status(row.video_id, "missing_file", f"{path}: no such file")
        elif not _is_done(crops_dir, row.video_id, path):
            todo.append((row.video_id, str(path)))
    if todo:
        _run(todo, cfg, crops_dir, progress)
    return _collect(videos["video_id"].tolist(), missing, crops_dir)


def _collect(video_ids: list[str], missing: dict, crops_dir: Path) -> FaceResult:
    """Concatenate the per-video files, in the order of the videos table."""
    statuses, faces = [], []
    for video_id in video_ids:
        if video_id in missing:
            statuses.append(missing[video_id])
            continue
        marker = face_cache.read_marker(crops_dir, video_id)
        if marker is None:
            raise RuntimeError(f"{crops_dir}: video {video_id!r} has no result after extraction")
        statuses.append({k: marker[k] for k in STATUS_COLUMNS})
        if marker["status"] == "ok":
            faces.append(face_cache.read_faces(crops_dir, video_id))
    status = pd.DataFrame(statuses, columns=list(STATUS_COLUMNS)).astype(STATUS_COLUMNS)
    face_table = pd.concat(faces, ignore_index=True) if faces else _empty_faces()
    return FaceResult(face_table.astype(FACE_COLUMNS), status, crops_dir)
