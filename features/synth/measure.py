"""Measure a synthetic corpus: generation time per video, size on disk, MTCNN detection rate.

The detection rate is the share of (frame, person) pairs whose face is in the frame (ground truth
`in_frame`) for which facenet-pytorch's MTCNN, with its default thresholds on the full-resolution
frame, returns a box overlapping the true face box (IoU >= MATCH_IOU). It reads
`ground_truth.parquet`, which only measurement and tests may use.

    python -m features.synth.measure OUT [--generate] [--every 4] [--max-videos 30] [generator options]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from features.synth.config import SynthConfig
from features.synth.corpus import generate_corpus

MATCH_IOU = 0.3
MTCNN_THRESHOLDS = (0.6, 0.7, 0.7)
MTCNN_MIN_FACE = 20
MTCNN_THREADS = 1  # small frames: more threads only add contention on a busy machine


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def read_frames(path: Path) -> list[np.ndarray]:
    """All frames of a video as RGB arrays."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise ValueError(f"{path}: no frames could be decoded")
    return frames


def detection_table(root: Path | str, every: int = 1, videos: list[str] | None = None,
                    device: str = "cpu", progress: bool = True) -> pd.DataFrame:
    """One row per in-frame ground-truth face on every `every`-th frame, with `detected` and prob."""

    root = Path(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(MTCNN_THREADS)
    try:
        return _detect_all(root, every, videos, device, progress)
    finally:
        torch.set_num_threads(threads)


def _detect_all(root: Path, every: int, videos: list[str] | None, device: str, progress: bool) -> pd.DataFrame:
    from facenet_pytorch import MTCNN  # heavy import: only when measuring

    mtcnn = MTCNN(keep_all=True, device=device, thresholds=list(MTCNN_THRESHOLDS), min_face_size=MTCNN_MIN_FACE)
    gt = pd.read_parquet(root / "ground_truth.parquet")
    gt = gt[gt["in_frame"] & (gt["frame_idx"] % every == 0)]
    if videos is not None:
        gt = gt[gt["video_id"].isin(videos)]
    rows = []
    for vid, g in tqdm(gt.groupby("video_id", sort=True), desc="MTCNN", disable=not progress):
        frames = read_frames(root / vid)
        for fi, fg in g.groupby("frame_idx"):
            boxes, probs = mtcnn.detect(frames[int(fi)])
            for r in fg.itertuples():
                h, w = frames[int(fi)].shape[:2]
                truth = np.array([max(r.x0, 0), max(r.y0, 0), min(r.x1, w), min(r.y1, h)])
                best, prob = 0.0, np.nan
                for b, p in zip(boxes if boxes is not None else [], probs if boxes is not None else []):
                    o = iou(truth, b)
                    if o > best:
                        best, prob = o, float(p)
                rows.append((vid, int(fi), r.person, bool(r.swapped), best >= MATCH_IOU, best, prob))
    return pd.DataFrame(rows, columns=["video_id", "frame_idx", "person", "swapped", "detected", "iou", "prob"])


def corpus_size_bytes(root: Path | str) -> int:
    return sum(p.stat().st_size for p in Path(root).glob("*.mp4"))


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--generate", action="store_true", help="generate the corpus first (timed)")
    ap.add_argument("--every", type=int, default=1, help="measure every k-th frame")
    ap.add_argument("--max-videos", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-originals", type=int, default=SynthConfig.n_originals)
    ap.add_argument("--n-test-originals", type=int, default=SynthConfig.n_test_originals)
    ap.add_argument("--n-frames", type=int, default=SynthConfig.n_frames)
    ap.add_argument("--workers", type=int, default=1)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    report: dict = {}
    if args.generate:
        cfg = SynthConfig(seed=args.seed, n_originals=args.n_originals, n_test_originals=args.n_test_originals,
                          n_frames=args.n_frames, workers=args.workers)
        t0 = time.perf_counter()
        generate_corpus(args.root, cfg, overwrite=True)
        seconds = time.perf_counter() - t0
        n = len(json.loads((args.root / "metadata.json").read_text()))
        report.update(videos=n, generation_s=round(seconds, 1), s_per_video=round(seconds / n, 3))
    meta = json.loads((args.root / "metadata.json").read_text())
    report["corpus_mb"] = round(corpus_size_bytes(args.root) / 2**20, 1)
    names = sorted(meta)
    if args.max_videos:
        names = list(np.random.default_rng(0).choice(names, min(args.max_videos, len(names)), replace=False))
    det = detection_table(args.root, args.every, names, args.device)
    report.update(detection_rate=round(float(det["detected"].mean()), 4), faces_measured=len(det),
                  rate_real=round(float(det.loc[~det["swapped"], "detected"].mean()), 4),
                  rate_swapped=round(float(det.loc[det["swapped"], "detected"].mean()), 4),
                  videos_measured=len(names))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
