"""DFDC at scale, on paper: disk, memory and hours of `oof.py --profile full` on all of DFDC,
computed from measured figures (this script measures what it can and names the source of the rest).

    python -m benchmarks.scale --images ../shared/data/dfdc-faces-dev/faces_224 \\
        --oof-run .fakestack/oof/<key>

Measured here: bytes per crop of each cache format at the full profile's crop size (real face
images resized to it, grouped into videos of `n_frames` crops, through the cache's own writers) and
their read speed (whole videos, and single crops in random order as training reads them); bytes
per row of the tables the main process holds (from an oof run's outputs).
Read from files: faces/s per learner on a GPU (`--gpu-learners`, a CSV of `bench.learners --out`;
the default is the H100 run of 2026-11-22) and on CPU (`--oof-run`'s throughput.csv).
Given (flags, with their sources as defaults): face-stage seconds per 1080p video.

Units: every learner x fold trains `epochs` passes over (k-1)/k of the crops and predicts the rest
(the OOF rows); the test videos are ignored (DFDC's are a few % of the corpus). On N machines the
face stage divides by N, and the units are packed onto the N GPUs longest first.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from benchmarks.faces import measure_formats
from pipelines.config import build_config
from pipelines.oof import OOFConfig, active_learners, train_configs

HERE = Path(__file__).resolve().parent
DFDC_VIDEOS = 119_154  # the DFDC training set's 50 parts (Dolhansky et al. 2020)
DFDC_SOURCE_TB = 0.47  # its videos, as downloaded
GPU_LEARNERS = HERE / "measured" / "learners_full_h100_2026-11-22.csv"
CPU_FACE_S_PER_VIDEO = 7.2  # issue 15: 2 real 1080p DFDC videos, 32 frames, one process, one thread
CPU_DECODE_S_PER_VIDEO = 2.9  # of which decoding (the rest MTCNN on the CPU)
GPU_MACHINE_CORES = 16
DEFAULT_IMAGES = 256
DEFAULT_HD_VIDEOS = 2
MACHINES = (1, 2, 4, 8)
SECONDS_PER_HOUR = 3600.0
TB, GIB = 1e12, 2**30


def read_images(folder: Path, n: int, size: int, per_video: int) -> dict[str, np.ndarray]:
    """`n` face images of `folder` resized to `size`, as videos of `per_video` crops."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    if not files:
        raise FileNotFoundError(f"{folder}: no face images (.jpg, .png)")
    crops = []
    for f in files:
        image = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{f}: unreadable image")
        crops.append(cv2.cvtColor(cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB))
    return {f"v{i:04d}": np.stack(crops[i:i + per_video]) for i in range(0, len(crops), per_video)}


def hd_crops(cfg: OOFConfig, n_videos: int, where: Path) -> dict[str, np.ndarray]:
    """Crops the full profile's face stage (on the CPU, one process) cuts from the first videos of
    the generated 1080p corpus: faces at their native resolution, as DFDC's are, not upscaled."""
    from benchmarks.faces import bench_corpus
    from features.corpus.layouts import read_videos
    from features.faces.extract import extract_faces, load_crops

    videos = read_videos([bench_corpus(None)]).head(n_videos)
    faces = extract_faces(videos, dataclasses.replace(cfg.faces, device="cpu", workers=1, crop_format="npy"), where,
                          progress=False)
    return {v: load_crops(faces.crops_dir, v) for v in faces.faces["video_id"].unique()}


def unit_hours(learners: pd.DataFrame, crops: float, k: int, epochs: dict[str, int]) -> pd.DataFrame:
    """Hours of one learner x fold unit and of all k units per learner, at the given faces/s."""
    out = learners[["learner", "train_faces_per_s", "predict_faces_per_s"]].copy()
    out["epochs"] = out["learner"].map(epochs)
    train = out["epochs"] * crops * (k - 1) / k / out["train_faces_per_s"]
    predict = crops / k / out["predict_faces_per_s"]
    out["unit_h"] = (train + predict) / SECONDS_PER_HOUR
    out["all_units_h"] = k * out["unit_h"]
    return out


def makespan(unit_h: list[float], machines: int) -> float:
    """Hours until the last unit ends, units packed longest first onto `machines` GPUs."""
    loads = [0.0] * machines
    for h in sorted(unit_h, reverse=True):
        loads[loads.index(min(loads))] += h
    return max(loads)


def plan(args) -> dict[str, pd.DataFrame]:
    cfg = build_config(OOFConfig, "oof", "full", args.overrides)
    learners = active_learners(cfg)
    tcfgs = train_configs(cfg, learners)
    size, frames, k = cfg.faces.crop_size, cfg.faces.n_frames, cfg.folds.k
    crops = args.videos * frames * args.faces_per_frame
    with tempfile.TemporaryDirectory() as tmp:
        formats = measure_formats(read_images(Path(args.images), args.n_images, size, frames), Path(tmp) / "real")
        formats.insert(0, "crops_of", f"real faces resized to {size} px")
        if args.hd_videos:
            native = measure_formats(hd_crops(cfg, args.hd_videos, Path(tmp) / "faces"), Path(tmp) / "hd")
            formats = pd.concat([formats, native.assign(crops_of=f"1080p video, native {size} px crops")])
    formats["DFDC_TB"] = formats["bytes_per_crop"] * crops / TB
    tables = {"cache formats at the full profile's crop size": formats}

    if args.oof_run:
        per_row = {}
        for name in ("faces", "frame_preds"):
            table = pd.read_parquet(Path(args.oof_run) / f"{name}.parquet")
            per_row[name] = table.memory_usage(deep=True).sum() / max(len(table), 1)
        rows = pd.DataFrame([{"table": "faces (one row per crop)", "bytes_per_row": per_row["faces"],
                              "DFDC_GiB": per_row["faces"] * crops / GIB},
                             {"table": f"frame_preds ({len(learners)} learners)", "bytes_per_row": per_row["frame_preds"],
                              "DFDC_GiB": per_row["frame_preds"] * crops * len(learners) / GIB}])
        tables["rows the main process holds (pixels never)"] = rows

    gpu = pd.read_csv(args.gpu_learners)
    gpu = gpu[gpu["learner"].isin(learners)]
    epochs = {name: t.epochs for name, t in tcfgs.items()}
    units = unit_hours(gpu, crops, k, epochs)
    tables["level 0 on one GPU (faces/s from " + Path(args.gpu_learners).name + ")"] = units

    gpu_face_s = args.gpu_face_s_per_video
    unit_list = [h for h in units["unit_h"] for _ in range(k)]
    machines = []
    for n in MACHINES:
        faces_h = args.videos * gpu_face_s / n / SECONDS_PER_HOUR
        units_h = makespan(unit_list, n)
        machines.append({"machines": n, "face_stage_h": faces_h, "units_h": units_h, "total_h": faces_h + units_h})
    tables[f"oof.py --profile full on DFDC ({args.videos} videos), one GPU per machine"] = pd.DataFrame(machines)
    tables["inputs"] = pd.DataFrame([
        {"figure": "videos", "value": args.videos, "source": "DFDC training parts"},
        {"figure": "crops", "value": crops, "source": f"{frames} frames x {args.faces_per_frame} faces per frame"},
        {"figure": "face stage s/video, one GPU machine", "value": gpu_face_s, "source": args.gpu_face_source},
        {"figure": "face stage s/video, one CPU core", "value": CPU_FACE_S_PER_VIDEO, "source": "issue 15 (2 DFDC videos)"},
        {"figure": "source videos TB", "value": DFDC_SOURCE_TB, "source": "DFDC download"},
    ])
    return tables


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, help="a folder of real face images (bytes per crop are measured on them)")
    p.add_argument("--n-images", type=int, default=DEFAULT_IMAGES)
    p.add_argument("--hd-videos", type=int, default=DEFAULT_HD_VIDEOS,
                   help="also measure native-resolution crops of this many generated 1080p videos (0: skip)")
    p.add_argument("--oof-run", help="an oof output folder: bytes per table row")
    p.add_argument("--gpu-learners", default=str(GPU_LEARNERS), help="bench.learners --profile full --out CSV")
    p.add_argument("--videos", type=int, default=DFDC_VIDEOS)
    p.add_argument("--faces-per-frame", type=float, default=1.0)
    p.add_argument("--gpu-face-s-per-video", type=float, default=CPU_DECODE_S_PER_VIDEO / GPU_MACHINE_CORES,
                   help="face stage seconds per 1080p video on one GPU machine (default: decoding-bound "
                        "estimate, CPU decode s/video / 16 cores; MTCNN on the GPU assumed to keep up)")
    p.add_argument("--gpu-face-source", default=f"estimate: {CPU_DECODE_S_PER_VIDEO} s decode per video per core "
                   f"(issue 15) / {GPU_MACHINE_CORES} cores")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="full-profile oof overrides (e.g. select=[meso4,efficientnet])")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, pd.DataFrame]:
    tables = plan(parse_args(argv))
    for name, table in tables.items():
        print(f"\n== {name} ==\n{table.to_string(index=False, float_format=lambda x: f'{x:.3g}')}")
    return tables


if __name__ == "__main__":
    main()
