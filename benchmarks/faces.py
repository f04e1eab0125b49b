"""Benchmark of the face stage: this stage's way vs the naive way, on the same videos, in one run.

    python -m benchmarks.faces --set n_frames=32 --naive-frames 30   # the generated 1080p corpus
    python -m benchmarks.faces --variant detect_every=4,decoder=pyav_ref # a lever, against the same videos
    python -m benchmarks.faces --data PATH --videos 20 --set detect_scale=0.5
    python -m benchmarks.faces --small              # the embedded corpus's 320x240 format
    python -m benchmarks.faces --small --detectors mtcnn dlib_hog dlib_mmod   # detectors side by side
    python -m benchmarks.faces --detectors mtcnn dlib_hog --data A --data B --set n_frames=8  # real videos

* fast  = features.faces as the pipeline runs it: `n_frames` sampled frames (grab/retrieve),
  downscaled, MTCNN in batches, crops. Decode, detect and crop are timed separately so the table
  says what limits the stage. Then the same videos through `extract_faces` end to end (process
  pool, cache writes; pool start-up included) for the per-video wall time a user sees.
* naive = what the seed notebooks did: read every frame, MTCNN (facenet-pytorch defaults) on each
  full-resolution frame, one frame at a time.

Both in-process timings run with one torch thread (what each pool worker gets), so frames/s compare
per-frame work fairly; the naive way processes every frame, so compare frames/s, not total time.
Detection rate = share of processed frames with >= 1 face; where the corpus has ground_truth.parquet
also the rate over frames that truly show a face (>= 80 % visible) and the share of detections that
hit a true face (IoU >= 0.4). A `--variant` row also says how its boxes follow the first row's on
the same frames (`iou_vs_fast`: a carried box against a fresh detection). `--formats` also
measures the crop cache formats (size, write, read).

`--detectors` instead compares face detectors (features.faces.detect.DETECTORS) on the same
sampled frames of each corpus given (`--data`, repeatable; default the generated corpus): per
detector the detection seconds per frame, detection rate, and against the generator's truth (where
the corpus has it) recall over face frames and hit precision; then, for every pair, how the boxes
of one follow the other's (mean best IoU, and the share of the other's faces it missed): on real
videos, without truth, that agreement is the comparison. dlib's detectors give every box det_prob
1.0 (their own threshold decides; features.faces.detect), so `det_prob` filters only MTCNN's.
MMOD costs ~1 s per 256x192 frame on one core: keep `--videos` and `n_frames` small at 1080p.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from features.common import ConfigError, from_dict, to_dict
from features.corpus.layouts import read_videos
from features.devices import check_device
from features.faces.cache import CROP_STORES, write_result
from features.faces.config import DETECT_THREADS, FaceConfig
from features.faces.decode import read_frames
from features.faces.detect import DETECTORS, build_detector, crop_face, detect_faces
from features.faces.extract import extract_faces
from features.faces.tracking import iou_matrix
from pipelines.config import DEFAULT_PROFILE, WORK_DIR, apply_override, load_profile

BENCH_DIR = WORK_DIR / "bench_faces"
DEFAULT_VIDEOS = 6
BENCH_SYNTH = dict(n_originals=2, n_test_originals=0, seed=7)  # ~11 videos of the demo format
NAIVE = dict(min_face_size=20, thresholds=(0.6, 0.7, 0.7), factor=0.709, detect_scale=1.0,
             detect_max_side=None, batch_size=1, channels_last=False)  # facenet-pytorch MTCNN() as is
HIT_IOU = 0.4  # a detection overlapping a true face box this much counts as a hit


def bench_corpus(data: str | None, small: bool = False) -> Path:
    """`data`, or the generated real-resolution corpus (features.synth.hd: 1080p, 10 s, H.264), or
    with `small` the embedded corpus's format."""
    if data:
        return Path(data)
    if small:
        from features.synth import SynthConfig, generate_corpus

        return generate_corpus(BENCH_DIR / "corpus", SynthConfig(**BENCH_SYNTH), progress=True)
    from features.synth.hd import generate_hd_corpus

    return generate_hd_corpus(BENCH_DIR / "hd", progress=True)


def _truth(root: Path) -> pd.DataFrame | None:
    path = root / "ground_truth.parquet"
    if not path.exists():
        return None
    gt = pd.read_parquet(path)
    return gt[gt["in_frame"]]


def _frame_rows(video_id: str, frame_idx: list[int], dets) -> list[dict]:
    """One row per processed frame: how many faces, and their boxes (for the ground-truth check)."""
    return [dict(video_id=video_id, frame_idx=f, n_faces=len(d.probs), boxes=d.boxes)
            for f, d in zip(frame_idx, dets)]


def _empty_crops(cfg: FaceConfig) -> np.ndarray:
    return np.zeros((0, cfg.crop_size, cfg.crop_size, 3), np.uint8)


MTCNN_STAGES = ("pnet", "rnet", "onet")


class StageTimer:
    """Seconds spent inside each MTCNN network's forward (hooks); the rest of `detect` is the image
    pyramid's resizing, the box regression and non-maximum suppression in between."""

    def __init__(self, detector):
        self.seconds = dict.fromkeys(MTCNN_STAGES, 0.0)
        self._start: dict[str, float] = {}
        self._handles = []
        for name in MTCNN_STAGES:
            net = getattr(detector, name)
            self._handles.append(net.register_forward_pre_hook(self._pre(name)))
            self._handles.append(net.register_forward_hook(self._post(name)))

    def _pre(self, name):
        def hook(module, args):
            self._start[name] = time.perf_counter()
        return hook

    def _post(self, name):
        def hook(module, args, out):
            self.seconds[name] += time.perf_counter() - self._start.pop(name)
        return hook

    def close(self) -> dict[str, float]:
        for h in self._handles:
            h.remove()
        return self.seconds


def where_time_goes(paths: dict[str, Path], cfg: FaceConfig, detector, where: Path) -> pd.DataFrame:
    """Seconds per video of each step of this stage's way, as `extract_faces` runs them: opening the
    file, decoding (demuxing and decoding every frame up to the last sampled one), converting the
    kept frames to RGB, each MTCNN network, the rest of detection, cropping, writing the cache."""
    t = dict.fromkeys(["open", "decode", "colour", *MTCNN_STAGES, "detect_other", "crop", "write"], 0.0)
    timer = StageTimer(detector)
    for video_id, path in paths.items():
        t0 = time.perf_counter()
        cv2.VideoCapture(str(path)).release()
        t1 = time.perf_counter()
        frames = read_frames(path, cfg.n_frames, threads=cfg.decode_threads, decoder=cfg.decoder,
                             clip_len=cfg.clip_len)
        t2 = time.perf_counter()
        for im in frames.images:  # the same conversion again, timed alone (RGB -> BGR costs as much)
            cv2.cvtColor(im, cv2.COLOR_RGB2BGR)
        t3 = time.perf_counter()
        before = sum(timer.seconds.values())
        dets = detect_faces(detector, frames.images, cfg)
        t4 = time.perf_counter()
        found = [crop_face(im, box, cfg.margin, cfg.crop_size) for im, det in zip(frames.images, dets)
                 for box in det.boxes]
        t5 = time.perf_counter()
        crops = np.stack(found) if found else _empty_crops(cfg)
        faces = pd.DataFrame({"video_id": [video_id] * len(crops)})
        write_result(where, cfg.crop_format, faces, crops, {"video_id": video_id, "status": "ok"})
        t6 = time.perf_counter()
        t["open"] += t1 - t0
        t["colour"] += t3 - t2
        t["decode"] += (t2 - t1) - (t3 - t2)  # read_frames converts the kept frames itself
        t["detect_other"] += (t4 - t3) - (sum(timer.seconds.values()) - before)
        t["crop"] += t5 - t4
        t["write"] += t6 - t5
    for name, sec in timer.close().items():
        t[name] = sec
    total = sum(t.values())
    return pd.DataFrame([{"step": k, "s_per_video": v / len(paths), "share": v / total} for k, v in t.items()])


SHEET_COLUMNS = 8  # thumbnails per row of a contact sheet
SHEET_THUMB_WIDTH = 240  # px
BOX_RGB, MISS_RGB = (0, 255, 0), (255, 0, 0)  # a detected face's box; the frame of a frame without one


def write_sheet(images: list[np.ndarray], frame_idx: list[int], dets, path: Path) -> Path:
    """A contact sheet of one video's sampled frames with the detected boxes drawn on them, so a
    person can check by eye which frames show a face the stage missed (a red frame has none)."""
    thumbs = []
    for image, idx, det in zip(images, frame_idx, dets):
        scale = SHEET_THUMB_WIDTH / image.shape[1]
        thumb = cv2.resize(image, (SHEET_THUMB_WIDTH, max(1, round(image.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        for x0, y0, x1, y1 in np.asarray(det.boxes, dtype=float).reshape(-1, 4) * scale:
            cv2.rectangle(thumb, (int(x0), int(y0)), (int(x1), int(y1)), BOX_RGB, 2)
        if not len(det.boxes):
            cv2.rectangle(thumb, (0, 0), (thumb.shape[1] - 1, thumb.shape[0] - 1), MISS_RGB, 4)
        cv2.putText(thumb, str(idx), (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        thumbs.append(thumb)
    height = max(t.shape[0] for t in thumbs)
    thumbs = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in thumbs]
    thumbs += [np.zeros_like(thumbs[0])] * (-len(thumbs) % SHEET_COLUMNS)
    rows = [np.concatenate(thumbs[i:i + SHEET_COLUMNS], axis=1) for i in range(0, len(thumbs), SHEET_COLUMNS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    return path


def per_video(frames: pd.DataFrame, seconds: dict[str, float]) -> pd.DataFrame:
    """Per video: sampled frames, the share with a face, faces per frame, seconds (decode+detect)."""
    table = frames.groupby("video_id", sort=False).agg(
        frames=("n_faces", "size"), det_rate=("n_faces", lambda n: float((n > 0).mean())),
        faces_per_frame=("n_faces", "mean")).reset_index()
    return table.assign(seconds=table["video_id"].map(seconds))


def time_fast(paths: dict[str, Path], cfg: FaceConfig, detector,
              sheet_dir: Path | None = None) -> tuple[dict, pd.DataFrame, dict]:
    """Sampled + downscaled + batched, in this process: decode, detect and crop timed apart; with
    `sheet_dir`, a contact sheet per video (not timed). `t["per_video"]` holds each video's seconds."""
    t = dict(decode=0.0, detect=0.0, crop=0.0)
    rows, crops, seconds = [], {}, {}
    for video_id, path in paths.items():
        t0 = time.perf_counter()
        frames = read_frames(path, cfg.n_frames, threads=cfg.decode_threads, decoder=cfg.decoder,
                             clip_len=cfg.clip_len)
        t1 = time.perf_counter()
        dets = detect_faces(detector, frames.images, cfg)
        t2 = time.perf_counter()
        found = [crop_face(im, box, cfg.margin, cfg.crop_size)
                 for im, det in zip(frames.images, dets) for box in det.boxes]
        crops[video_id] = np.stack(found) if found else _empty_crops(cfg)
        t3 = time.perf_counter()
        t["decode"] += t1 - t0
        t["detect"] += t2 - t1
        t["crop"] += t3 - t2
        seconds[video_id] = t3 - t0
        rows += _frame_rows(video_id, frames.frame_idx, dets)
        if sheet_dir is not None:
            write_sheet(frames.images, frames.frame_idx, dets, Path(sheet_dir) / f"{Path(video_id).stem}.png")
    t["per_video"] = seconds
    return t, pd.DataFrame(rows), crops


def time_naive(paths: dict[str, Path], cfg: FaceConfig, detector, max_frames: int | None = None) -> tuple[dict, pd.DataFrame]:
    """Every frame, full resolution, MTCNN one frame at a time (the seed notebooks' loop); with
    `max_frames`, only each video's first frames (its cost is per frame: ~0.5 s at 1080p)."""
    t = dict(decode=0.0, detect=0.0)
    rows = []
    for video_id, path in paths.items():
        cap = cv2.VideoCapture(str(path))
        idx = 0
        while max_frames is None or idx < max_frames:
            t0 = time.perf_counter()
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            t1 = time.perf_counter()
            det = detect_faces(detector, [rgb], cfg)[0]
            t["decode"] += t1 - t0
            t["detect"] += time.perf_counter() - t1
            rows += _frame_rows(video_id, [idx], [det])
            idx += 1
        cap.release()
    return t, pd.DataFrame(rows)


def agreement(frames: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """How closely a variant's boxes follow the reference way's on the same frames: the mean and
    the 5th percentile of each reference box's best IoU with the variant's boxes (a carried box
    against a fresh detection), the share of reference faces the variant missed (IoU < HIT_IOU), and
    the share of the variant's frames the reference has too (another decoder samples other frames:
    only the shared ones are compared)."""
    ref = {(r.video_id, r.frame_idx): r.boxes for r in reference.itertuples()}
    best = []
    for row in frames.itertuples():
        want = ref.get((row.video_id, row.frame_idx))
        if want is None or len(want) == 0:
            continue
        got = iou_matrix(want, row.boxes).max(axis=1) if row.n_faces else np.zeros(len(want))
        best += got.tolist()
    best = np.asarray(best)
    if not len(best):
        return {"frames_matched": 0.0}
    matched = sum((r.video_id, r.frame_idx) in ref for r in frames.itertuples()) / max(len(frames), 1)
    return {"iou_vs_fast": float(best.mean()), "iou_vs_fast_p5": float(np.percentile(best, 5)),
            "missed_vs_fast": float((best < HIT_IOU).mean()), "frames_matched": matched}


def detection_rates(frames: pd.DataFrame, truth: pd.DataFrame | None) -> dict:
    """Share of frames with a face; with ground truth, recall over face frames and hit precision."""
    out = {"det_rate": float((frames["n_faces"] > 0).mean())}
    if truth is None:
        return out
    cols = ["x0", "y0", "x1", "y1"]
    by_frame = {k: g[cols].to_numpy() for k, g in truth.groupby(["video_id", "frame_idx"])}
    has_face = [(v, f) in by_frame for v, f in zip(frames["video_id"], frames["frame_idx"])]
    face_frames = frames[has_face]
    out["det_rate_gt"] = float((face_frames["n_faces"] > 0).mean()) if len(face_frames) else float("nan")
    hits = total = 0
    for row in frames.itertuples():
        if row.n_faces:
            gt = by_frame.get((row.video_id, row.frame_idx))
            total += row.n_faces
            if gt is not None:
                hits += int((iou_matrix(row.boxes, gt).max(axis=1) >= HIT_IOU).sum())
    out["precision"] = hits / total if total else float("nan")
    return out


RANDOM_READS = 2000  # crops read one at a time in random order, as training reads them


def measure_formats(crops: dict[str, np.ndarray], where: Path, seed: int = 0) -> pd.DataFrame:
    """Size on disk, write and read time of each crop format over the same crops: whole videos
    (`read`, as scoring reads them) and single crops in random order (`read_at`, as training's lazy
    crop source does; the OS page cache is warm either way)."""
    rows = []
    size = next(iter(crops.values())).shape[1]
    for fmt in CROP_STORES.names():
        store, folder = CROP_STORES.get(fmt), where / fmt
        folder.mkdir(parents=True)
        t0 = time.perf_counter()
        for video_id, arr in crops.items():
            store.write(folder, video_id, arr)
        t1 = time.perf_counter()
        back = {v: store.read(folder, v, size) for v in crops}
        t2 = time.perf_counter()
        n = sum(len(a) for a in crops.values())
        where_is = {v: store.locate(store.path(folder, v), size)[1] for v in crops}
        picks = [(v, i) for v, a in crops.items() for i in range(len(a))]
        order = np.random.default_rng(seed).permutation(len(picks))[:RANDOM_READS]
        t3 = time.perf_counter()
        for k in order:
            v, i = picks[k]
            store.read_at(store.path(folder, v), where_is[v], i, size)
        random_ms = 1e3 * (time.perf_counter() - t3) / max(len(order), 1)
        err = np.mean([np.abs(back[v].astype(int) - a).mean() for v, a in crops.items() if len(a)])
        files = [p for p in folder.rglob("*") if p.is_file()]
        nbytes = sum(p.stat().st_size for p in files)
        rows.append(dict(format=fmt, crop_size=size, crops=n, files=len(files), MB=nbytes / 2**20,
                         bytes_per_crop=nbytes / n, write_ms_per_crop=1e3 * (t1 - t0) / n,
                         read_ms_per_crop=1e3 * (t2 - t1) / n, random_read_ms_per_crop=random_ms,
                         mean_abs_err=err))
    return pd.DataFrame(rows)


def time_pipeline(videos: pd.DataFrame, cfg: FaceConfig, where: Path) -> float:
    """extract_faces end to end (pool start-up, decode, detect, crops, cache writes), cold cache."""
    t0 = time.perf_counter()
    extract_faces(videos, cfg, where, progress=False)
    return time.perf_counter() - t0


def _row(name: str, t: dict, frames: pd.DataFrame, n_videos: int, truth) -> dict:
    steps = {k: v for k, v in t.items() if isinstance(v, float)}  # not the per-video seconds
    total = sum(steps.values())
    n_frames, n_faces = len(frames), int(frames["n_faces"].sum())
    row = dict(way=name, videos=n_videos, frames=n_frames, faces=n_faces, seconds=total,
               frames_per_s=n_frames / total, faces_per_s=n_faces / total, s_per_video=total / n_videos,
               **{f"{k}_s": v for k, v in steps.items()})
    return {**row, **detection_rates(frames, truth)}


def _variant(cfg: FaceConfig, spec: str) -> FaceConfig:
    """`cfg` with comma-separated `key=value` overrides applied (a --variant row of the table); a
    comma inside brackets belongs to a list value (`thresholds=[0.6,0.7,0.6]`)."""
    data = to_dict(cfg)
    for override in re.split(r",(?![^\[]*\])", spec):
        apply_override(data, override)
    return from_dict(FaceConfig, data, where=f"variant {spec}")


def bench_videos(root: Path, n_videos: int) -> pd.DataFrame:
    """`n_videos` of the corpus at `root` (any layout), evenly spread over its videos sorted by id, so
    a corpus listed originals first (FF++) gives originals and fakes alike."""
    videos = read_videos([root]).sort_values("video_id", kind="stable").reset_index(drop=True)
    picks = np.unique(np.linspace(0, len(videos) - 1, min(n_videos, len(videos))).round().astype(int))
    return videos.iloc[picks].reset_index(drop=True)


def run_benchmark(root: Path, cfg: FaceConfig, n_videos: int, formats: bool, naive: bool = True,
                  variants: tuple[str, ...] = (), naive_frames: int | None = None,
                  sheet_dir: Path | None = None) -> dict:
    """All tables of the benchmark for the first `n_videos` videos of the corpus at `root`."""
    videos = bench_videos(root, n_videos)
    paths = {v: Path(r) / p for v, r, p in zip(videos["video_id"], videos["root"], videos["path"])}
    truth = _truth(root)
    torch.set_num_threads(DETECT_THREADS)  # one thread, as each pool worker runs
    rows, tables = [], {}
    fast_t, fast_frames, crops = time_fast(paths, cfg, build_detector(cfg), sheet_dir)
    rows.append(_row("fast (this stage)", fast_t, fast_frames, len(paths), truth))
    tables["per_video"] = per_video(fast_frames, fast_t["per_video"])
    for spec in variants:
        var = _variant(cfg, spec)
        var_t, var_frames, _ = time_fast(paths, var, build_detector(var))
        rows.append({**_row(f"fast, {spec}", var_t, var_frames, len(paths), truth),
                     **agreement(var_frames, fast_frames)})
    if naive:
        naive_cfg = replace(cfg, **NAIVE)
        naive_t, naive_rows = time_naive(paths, naive_cfg, build_detector(naive_cfg), naive_frames)
        rows.append(_row("naive (every frame, full res, 1 by 1)", naive_t, naive_rows, len(paths), truth))
    tables["throughput"] = pd.DataFrame(rows)
    if naive:
        naive_row = rows[-1]
        tables["speedup_vs_naive"] = pd.DataFrame([
            dict(way=r["way"], frames_per_s_ratio=r["frames_per_s"] / naive_row["frames_per_s"],
                 per_video_ratio=(naive_row["s_per_video"] / r["s_per_video"]) if naive_frames is None
                 else float("nan"))  # the naive way saw only part of each video
            for r in rows[:-1]])
    with tempfile.TemporaryDirectory(dir=BENCH_DIR if BENCH_DIR.exists() else None) as tmp:
        steps = Path(tmp) / "steps"
        steps.mkdir()
        tables["where_time_goes"] = where_time_goes(paths, cfg, build_detector(cfg), steps)
        wall = time_pipeline(videos, cfg, Path(tmp) / "cache")
        tables["pipeline"] = pd.DataFrame([dict(workers=cfg.workers, videos=len(videos), wall_s=wall,
                                                s_per_video=wall / len(videos),
                                                frames_per_s=len(fast_frames) / wall)])
        if formats:
            tables["formats"] = measure_formats(crops, Path(tmp) / "formats")
    return tables


def compare_detectors(root: Path, cfg: FaceConfig, n_videos: int, detectors: tuple[str, ...]) -> dict:
    """The detectors side by side on the first `n_videos` videos of the corpus at `root` (the same
    sampled frames for each): speed and rates per detector, agreement per pair (module docstring)."""
    videos = bench_videos(root, n_videos)
    paths = {v: Path(r) / p for v, r, p in zip(videos["video_id"], videos["root"], videos["path"])}
    truth = _truth(root)
    torch.set_num_threads(DETECT_THREADS)  # one thread, as each pool worker runs
    rows, found = [], {}
    for name in detectors:
        det_cfg = replace(cfg, detector=name)
        t, frames, _ = time_fast(paths, det_cfg, build_detector(det_cfg))
        found[name] = frames
        n = max(len(frames), 1)
        rows.append(dict(detector=name, videos=len(paths), frames=len(frames), faces=int(frames["n_faces"].sum()),
                         detect_s_per_frame=t["detect"] / n, decode_s_per_frame=t["decode"] / n,
                         **detection_rates(frames, truth)))
    pairs = []
    for name in detectors:
        for ref in detectors:
            if ref != name:
                agree = agreement(found[name], found[ref])
                pairs.append(dict(detector=name, reference=ref, mean_iou=agree.get("iou_vs_fast", np.nan),
                                  iou_p5=agree.get("iou_vs_fast_p5", np.nan),
                                  missed_of_reference=agree.get("missed_vs_fast", np.nan)))
    return {"detectors": pd.DataFrame(rows), "detector_agreement": pd.DataFrame(pairs)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", default=None,
                        help="corpus folder (any layout); default: the generated 1080p corpus; repeatable "
                             "with --detectors (one table per corpus)")
    parser.add_argument("--small", action="store_true", help="the embedded corpus's format instead (320x240, 12 frames)")
    parser.add_argument("--videos", type=int, default=DEFAULT_VIDEOS, help="videos to benchmark")
    parser.add_argument("--profile", default=DEFAULT_PROFILE,
                        help="FaceConfig from this profile's oof.yaml `faces:` (as the pipeline runs it)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a FaceConfig field, e.g. --set detect_scale=0.5 (repeatable)")
    parser.add_argument("--formats", action="store_true", help="also measure the crop cache formats")
    parser.add_argument("--no-naive", action="store_true", help="skip the (slow) naive way")
    parser.add_argument("--naive-frames", type=int, default=None,
                        help="the naive way on each video's first N frames only (its cost is per frame)")
    parser.add_argument("--variant", dest="variants", action="append", default=[], metavar="K=V[,K=V]",
                        help="another fast row with these FaceConfig overrides (repeatable)")
    parser.add_argument("--sheets", type=Path, default=None, metavar="DIR",
                        help="write a contact sheet per video (sampled frames, detected boxes) into DIR")
    parser.add_argument("--detectors", nargs="+", default=None, metavar="NAME",
                        help="compare these face detectors instead (features.faces.detect.DETECTORS), e.g. "
                             "--detectors mtcnn dlib_hog dlib_mmod")
    args = parser.parse_args(argv)
    if args.data and len(args.data) > 1 and not args.detectors:
        parser.error("more than one --data only with --detectors")
    return args


def face_config(profile: str | None, overrides: list[str]) -> FaceConfig:
    data = dict(load_profile(profile, "oof").get("faces") or {}) if profile else {}
    for override in overrides:
        apply_override(data, override)
    return from_dict(FaceConfig, data, where="faces")


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = face_config(args.profile, args.overrides)
    try:
        check_device(cfg.device)  # the full profile detects on CUDA: one line here, not a worker's traceback
    except ConfigError as err:
        print(f"faces.py: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    pd.set_option("display.width", 200)
    print(f"FaceConfig: {to_dict(cfg)}")
    if args.detectors:
        for name in args.detectors:  # an unknown name fails before any video is read
            DETECTORS.get(name)
        tables = {}
        for data in args.data or [None]:
            root = bench_corpus(data, args.small)
            found = compare_detectors(root, cfg, args.videos, tuple(args.detectors))
            _print_tables(found, f"corpus: {root}  torch threads per process: {DETECT_THREADS}")
            tables.update({f"{name} {root}": table for name, table in found.items()})
        return tables
    root = bench_corpus(args.data[0] if args.data else None, args.small)
    tables = run_benchmark(root, cfg, args.videos, args.formats, naive=not args.no_naive,
                           variants=tuple(args.variants), naive_frames=args.naive_frames,
                           sheet_dir=args.sheets)
    _print_tables(tables, f"corpus: {root}  torch threads per process: {DETECT_THREADS}")
    return tables


def _print_tables(tables: dict, header: str) -> None:
    print(header)
    for name, table in tables.items():
        print(f"\n== {name} ==\n{table.to_string(index=False, float_format=lambda x: f'{x:.3g}')}")


if __name__ == "__main__":
    main()
