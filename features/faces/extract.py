"""Face extraction stage: videos table -> faces table + per-video status + cached crops.

    decode (features.faces.decode) -> detect (features.faces.detect)
        -> track (features.faces.tracking) -> crop -> cache (features.faces.cache)

`extract_faces` accounts for every input video with exactly one status row: `ok`, `no_face`,
`decode_error` or `missing_file`, with a message. Finished videos are cached per FaceConfig hash
and skipped on re-runs; the work runs in a process pool, one MTCNN per worker.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from features.common import config_hash, result_dict
from features.contract import with_clip_idx
from features.engines import LOCAL_ENGINE, Engine, Resources
from features.faces import cache
from features.faces.config import DEFAULT_DETECTOR, DETECT_THREADS, NO_LANDMARKS, SINGLE_FRAME_CLIPS, FaceConfig
from features.faces.decode import DECODERS, DecodeError, read_frames
from features.faces.detect import DETECTORS, build_detector, crop_face, crop_landmarks, detect_faces
from features.faces.pool import n_workers
from features.faces.tracking import link_tracks

log = logging.getLogger(__name__)
CACHE_VERSION = 1  # bump when the cached files change meaning; part of the cache key
STATUSES = ("ok", "no_face", "decode_error", "missing_file")
FACE_COLUMNS = {
    "video_id": "string", "frame_idx": "int64", "face_idx": "int64", "x0": "float64", "y0": "float64",
    "x1": "float64", "y1": "float64", "det_prob": "float64", "crop_idx": "int64", "clip_idx": "int64",
}
# clip_idx: the video's clips that hold a face, numbered 0.. in time order (a clip is the clip_len
# consecutive frames of one sampled position; with clip_len 1 every frame with a face is its own)
STATUS_COLUMNS = {
    "video_id": "string", "status": "string", "message": "string", "n_frames": "int64",
    "n_faces": "int64", "n_stream": "int64", "rotation": "int64",
}
PRELOAD = ["features.faces.extract", "facenet_pytorch"]  # imported once by the forkserver
VIDEOS_PER_TASK = 8  # a distributed engine's face task: amortises building MTCNN and the task's start
FACE_TASKS_PER_GPU = 8  # detecting processes sharing one GPU (as the full profile's local pool does)


@dataclass
class FaceResult:
    faces: pd.DataFrame
    status: pd.DataFrame
    crops_dir: Path


def cache_fields(cfg: FaceConfig) -> dict:
    """The settings that change what is extracted (runtime knobs left out), plus the cache version.
    Single-frame sampling leaves `clip_len` out, so caches made before clips existed stay valid;
    so do the default detector and no landmarks (settings added later, at their old behaviour)."""
    fields = result_dict(cfg)
    if fields["clip_len"] == SINGLE_FRAME_CLIPS:
        del fields["clip_len"]
    if fields["detector"] == DEFAULT_DETECTOR:
        del fields["detector"]
    if fields["landmarks"] == NO_LANDMARKS:
        del fields["landmarks"]
    return {**fields, "cache_version": CACHE_VERSION}


def crops_dir_for(cache_dir: Path | str, cfg: FaceConfig) -> Path:
    return Path(cache_dir) / config_hash(cache_fields(cfg))


def load_crops(crops_dir: Path | str, video_id: str) -> np.ndarray:
    """(n, S, S, 3) uint8 RGB crops of one video; row i is the faces row with crop_idx == i."""
    crops_dir = Path(crops_dir)
    fields = cache.read_config(crops_dir)
    if cache.read_marker(crops_dir, video_id) is None:
        raise FileNotFoundError(
            f"{crops_dir}: no finished face extraction for video {video_id!r} (see face_status)"
        )
    store = cache.CROP_STORES.get(fields["crop_format"])
    return store.read(crops_dir, video_id, fields["crop_size"])


# ---- one video ------------------------------------------------------------------------------------

def status_row(video_id: str, status: str, message: str, n_frames=0, n_faces=0, n_stream=0, rotation=0):
    if status not in STATUSES:
        raise ValueError(f"unknown face status {status!r}; valid: {STATUSES}")
    return dict(video_id=video_id, status=status, message=message, n_frames=int(n_frames),
                n_faces=int(n_faces), n_stream=int(n_stream), rotation=int(rotation))


def faces_of_video(video_id: str, path: Path, cfg: FaceConfig, detector):
    """Decode, detect, track and crop one video -> (faces rows, crops array, status dict, landmarks:
    (n, P, 2) float32 in crop pixels, row i = crop_idx i, or None without `cfg.landmarks`).

    Bad input becomes a status, never an exception; bugs still raise.
    """
    empty = np.zeros((0, cfg.crop_size, cfg.crop_size, 3), np.uint8)
    try:
        frames = read_frames(path, cfg.n_frames, threads=cfg.decode_threads, decoder=cfg.decoder,
                             clip_len=cfg.clip_len)
    except FileNotFoundError as err:
        return _empty_faces(), empty, status_row(video_id, "missing_file", str(err)), _no_landmarks(cfg)
    except (DecodeError, cv2.error) as err:
        return _empty_faces(), empty, status_row(video_id, "decode_error", str(err)), _no_landmarks(cfg)
    dets = detect_faces(detector, frames.images, cfg)
    info = dict(n_frames=len(frames.images), n_stream=frames.n_stream, rotation=frames.rotation)
    notes = "; ".join(frames.notes)
    faces, crops, points = _faces_and_crops(video_id, frames, dets, cfg)
    if faces.empty:
        msg = f"no face with det_prob >= {cfg.det_prob} in {len(frames.images)} sampled frames"
        return faces, crops, status_row(video_id, "no_face", "; ".join(filter(None, [msg, notes])), **info), points
    return faces, crops, status_row(video_id, "ok", notes, n_faces=len(faces), **info), points


def _no_landmarks(cfg: FaceConfig) -> np.ndarray | None:
    """The landmarks of a video without faces: none at all when the config asks for none."""
    return np.zeros((0, cfg.landmarks, 2), np.float32) if cfg.landmarks != NO_LANDMARKS else None


def _faces_and_crops(video_id: str, frames, dets, cfg: FaceConfig):
    """Faces rows (tracked, ordered by frame then face_idx, crop_idx = row), their crops and their
    landmarks (crop pixels; None without `cfg.landmarks`)."""
    rows, crops, points = [], [], []
    for image, fidx, clip, det in zip(frames.images, frames.frame_idx, frames.clip_of(), dets):
        for box, prob in zip(det.boxes, det.probs):
            rows.append((fidx, clip, *box, prob))
            crops.append(crop_face(image, box, cfg.margin, cfg.crop_size))
        if cfg.landmarks != NO_LANDMARKS and len(det.boxes):
            points.extend(crop_landmarks(image, det.boxes, cfg))
    if not rows:
        return _empty_faces(), np.zeros((0, cfg.crop_size, cfg.crop_size, 3), np.uint8), _no_landmarks(cfg)
    faces = pd.DataFrame(rows, columns=["frame_idx", "clip_idx", "x0", "y0", "x1", "y1", "det_prob"])
    faces["clip_idx"] = dense_rank(faces["clip_idx"])
    boxes = faces[["x0", "y0", "x1", "y1"]]
    faces["face_idx"] = link_tracks(faces["frame_idx"], boxes, faces["det_prob"], cfg.track_iou)
    faces.insert(0, "video_id", video_id)
    order = faces.sort_values(["frame_idx", "face_idx"], kind="stable").index.to_numpy()
    faces = faces.loc[order].reset_index(drop=True)
    faces["crop_idx"] = np.arange(len(faces), dtype=np.int64)
    landmarks = np.stack([points[i] for i in order]) if cfg.landmarks != NO_LANDMARKS else None
    return faces[list(FACE_COLUMNS)].astype(FACE_COLUMNS), np.stack([crops[i] for i in order]), landmarks


def dense_rank(values: pd.Series) -> np.ndarray:
    """0, 1, 2 ... in the order of the distinct values (clips that hold a face, in time order)."""
    return np.unique(values.to_numpy(), return_inverse=True)[1].astype(np.int64)


def _empty_faces() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in FACE_COLUMNS.items()})


def source_key(path: Path) -> dict:
    """Identifies the input file's content cheaply: a changed file is re-extracted."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def process_and_store(video_id: str, path: str, cfg: FaceConfig, crops_dir: str, detector) -> dict:
    faces, crops, status, landmarks = faces_of_video(video_id, Path(path), cfg, detector)
    status["source"] = source_key(Path(path)) if Path(path).is_file() else None
    cache.write_result(Path(crops_dir), cfg.crop_format, faces, crops, status, landmarks)
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
    """One video in a pool or Ray worker. The driver saw the file: a worker that cannot is on a node
    without the corpus (an error, not a `missing_file` status). A video a killed and retried task
    already finished is kept."""
    visible_or_raise(Path(path))
    if is_done(Path(crops_dir), video_id, Path(path)):
        return cache.read_marker(Path(crops_dir), video_id)
    return process_and_store(video_id, path, _WORKER["cfg"], crops_dir, _WORKER["detector"])


def visible_or_raise(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: the run listed this file, but the worker on {socket.gethostname()} "
                                "cannot see it: with engine=ray the corpus must be on storage every node sees")


def face_resources(cfg: FaceConfig, engine: Engine) -> Resources:
    """One face task's share: DETECT_THREADS cores, and a GPU share when it detects on CUDA."""
    gpu = 1.0 / FACE_TASKS_PER_GPU if engine.wants_gpu(cfg.device) else 0.0
    return Resources(num_cpus=DETECT_THREADS, num_gpus=gpu)


def _run(todo: list[tuple[str, str]], cfg: FaceConfig, crops_dir: Path, progress: bool, engine: Engine) -> None:
    workers = n_workers(cfg.workers, len(todo))
    bar = tqdm(total=len(todo), desc="faces", unit="video", disable=not progress)
    if workers == 1 and not engine.distributed:
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
        resources = [face_resources(cfg, engine)] * len(tasks) if engine.distributed else None
        for _ in engine.map(_work, tasks, workers, _init_worker, (cfg,), PRELOAD, resources, VIDEOS_PER_TASK):
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


def is_done(crops_dir: Path, video_id: str, path: Path) -> bool:
    marker = cache.read_marker(crops_dir, video_id)
    return marker is not None and marker.get("source") == source_key(path)


def extract_faces(videos: pd.DataFrame, cfg: FaceConfig, cache_dir: Path | str,
                  progress: bool = True, engine: Engine = LOCAL_ENGINE) -> FaceResult:
    """Faces and status of every video in `videos` (columns video_id, root, path; optional status).

    Videos already extracted with the same settings (and unchanged files) are read from the cache;
    the rest run on `engine` (a local process pool, or Ray tasks). Missing files get status `missing_file` and are not cached, so
    they are picked up once they appear.
    """
    _check_videos(videos)
    cache.CROP_STORES.get(cfg.crop_format)  # unknown format, decoder or detector: fail before any work
    DECODERS.get(cfg.decoder)
    DETECTORS.get(cfg.detector)
    crops_dir = crops_dir_for(cache_dir, cfg)
    crops_dir.mkdir(parents=True, exist_ok=True)
    cache.write_config(crops_dir, cache_fields(cfg))
    marked = videos["status"].eq("missing_file").fillna(False) if "status" in videos else None
    missing, todo = {}, []
    for i, row in enumerate(videos.itertuples(index=False)):
        path = Path(str(row.root)) / str(row.path)
        if (marked is not None and bool(marked.iloc[i])) or not path.is_file():
            missing[row.video_id] = status_row(row.video_id, "missing_file", f"{path}: no such file")
        elif not is_done(crops_dir, row.video_id, path):
            todo.append((row.video_id, str(path)))
    log.info("faces: %d videos to extract, %d cached, %d missing (cache %s)", len(todo),
             len(videos) - len(todo) - len(missing), len(missing), crops_dir.name)
    if todo:
        _run(todo, cfg, crops_dir, progress, engine)
    return collect_results(videos["video_id"].tolist(), missing, crops_dir)


def collect_results(video_ids: list[str], missing: dict, crops_dir: Path) -> FaceResult:
    """Concatenate the per-video files, in the order of the videos table."""
    statuses, faces = [], []
    for video_id in video_ids:
        if video_id in missing:
            statuses.append(missing[video_id])
            continue
        marker = cache.read_marker(crops_dir, video_id)
        if marker is None:
            raise RuntimeError(f"{crops_dir}: video {video_id!r} has no result after extraction")
        statuses.append({k: marker[k] for k in STATUS_COLUMNS})
        if marker["status"] == "ok":
            faces.append(with_clip_idx(cache.read_faces(crops_dir, video_id)))
    status = pd.DataFrame(statuses, columns=list(STATUS_COLUMNS)).astype(STATUS_COLUMNS)
    face_table = pd.concat(faces, ignore_index=True) if faces else _empty_faces()
    return FaceResult(face_table.astype(FACE_COLUMNS), status, crops_dir)
