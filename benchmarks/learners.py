"""Benchmark of the level-0 learners: faces/s through training and prediction, per learner.

    python -m benchmarks.learners                          # demo profile (CPU)
    python -m benchmarks.learners --profile full --faces 4096 --out bench.csv   # on a GPU

Each learner of the profile (after `--set` overrides of the oof config, e.g. `--set select=[meso4]`)
trains for `--epochs` epochs on `--faces` random crops of the profile's crop size, through the real
training loop (DataLoader workers, augmentation, AMP, channels-last: everything `fit` does), then
predicts them with `predict_logits` (TTA as configured). The first epoch and the first prediction
pass are warm-up (worker start, cuDNN autotuning, allocator growth); the table reports the mean of
the later ones. Throughput does not depend on what the crops show, so no corpus is needed. Pair
and track learners (the delta view, the sequence learner: base_learners.inputs) read the crops as
clips of the profile's `faces.clip_len` frames; their rates count face crops read, as oof.py's do.

Columns: learner, variant, input size, view (crop_frac and input filter), batch size, device, train and predict faces/s, and the peak
GPU memory of training (CUDA only). `pipelines/oof.py` records the same two rates per unit in its
`throughput.csv`; this script isolates them from the rest of the stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pandas as pd
import torch

from base_learners.inputs import FRAME, input_kind, learner_inputs
from base_learners.oof import n_crops
from base_learners.registry import build_learner
from base_learners.train import TrainConfig, fit, predict_logits, resolve_device, seed_everything
from pipelines.config import add_config_args, build_config
from pipelines.oof import OOFConfig, active_learners, device_names, train_configs

DEFAULT_FACES = 1024
DEFAULT_EPOCHS = 2  # the first is warm-up
PREDICT_PASSES = 2  # likewise
BENCH_SEED = 0
BYTES_PER_GIB = 2**30


def random_crops(n: int, size: int, seed: int = BENCH_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(crops uint8 (n, size, size, 3), balanced 0/1 labels, one group per crop)."""
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    labels = (np.arange(n) % 2).astype(np.float32)
    return crops, labels, np.arange(n)


def learner_items(crops: np.ndarray, kind: str, clip_len: int):
    """(inputs, labels, groups) of a learner of input kind `kind` over random crops: the crops
    themselves, or their pairs or tracks when consecutive crops are read as clips of `clip_len`."""
    n = len(crops)
    clip = np.arange(n) // clip_len
    frames = pd.DataFrame({"video_id": clip.astype(str), "frame_idx": np.arange(n) % clip_len, "face_idx": 0,
                           "clip_idx": 0, "label": (clip % 2).astype(np.float32), "group": clip})
    items, inputs = learner_inputs(frames, crops, kind)
    return inputs, items["label"].to_numpy(np.float32), items["group"].to_numpy()


def _steady_rate(history: list[dict]) -> float:
    """Training faces/s over the epochs after the first (all of them if there is only one)."""
    steady = history[1:] or history
    return sum(h["train_samples"] for h in steady) / sum(h["train_seconds"] for h in steady)


def bench_learner(lcfg, tcfg: TrainConfig, crops, labels, groups, epochs: int) -> dict:
    """Train and predict one learner on the given crops (or pairs, or tracks); returns its row."""
    device = resolve_device(tcfg.device)
    tcfg = dataclasses.replace(tcfg, epochs=epochs, inner_val_frac=0.0, early_stopping_patience=0)
    seed_everything(tcfg.seed)
    model = build_learner(lcfg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    res = fit(model, crops, labels, groups, tcfg, progress=False)
    peak = torch.cuda.max_memory_allocated(device) / BYTES_PER_GIB if device.type == "cuda" else float("nan")
    seconds = []
    for _ in range(PREDICT_PASSES):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        predict_logits(res.model, crops, tcfg)
        seconds.append(time.perf_counter() - t0)
    steady = seconds[1:] or seconds
    return {"variant": getattr(res.model, "variant", lcfg.name), "input_size": lcfg.input_size,
            "crop_frac": lcfg.crop_frac, "view": _view_name(lcfg),
            "batch_size": tcfg.batch_size, "train_faces_per_s": _steady_rate(res.history),
            "predict_faces_per_s": n_crops(crops, np.arange(len(crops))) * len(steady) / sum(steady),
            "tta_flip": tcfg.tta_flip,
            "train_peak_gib": peak}


def _view_name(lcfg) -> str:
    """The input filter as a table cell: highpass carries its sigma."""
    return f"{lcfg.view}({lcfg.view_sigma:g})" if lcfg.view == "highpass" else lcfg.view


def run_benchmark(cfg: OOFConfig, n_faces: int, epochs: int) -> pd.DataFrame:
    """The table: one row per learner of the config."""
    learners = active_learners(cfg)
    tcfgs = train_configs(cfg, learners)
    crops, labels, groups = random_crops(n_faces, cfg.faces.crop_size)
    devices = device_names(tcfgs)
    rows = []
    for name, lcfg in learners.items():
        kind = input_kind(lcfg)
        inputs = (crops, labels, groups) if kind == FRAME else learner_items(crops, kind, cfg.faces.clip_len)
        row = bench_learner(lcfg, tcfgs[name], *inputs, epochs)
        rows.append({"learner": name, "device": devices[name], **row})
        print(f"{name}: train {row['train_faces_per_s']:.0f} faces/s, "
              f"predict {row['predict_faces_per_s']:.0f} faces/s", flush=True)
    return pd.DataFrame(rows)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=DEFAULT_FACES, help="random crops per learner")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="training epochs (first = warm-up)")
    parser.add_argument("--out", help="also write the table to this CSV file")
    add_config_args(parser)
    return parser.parse_args(argv)


def show_table(table: pd.DataFrame, out: str | None, digits: int, hide: tuple[str, ...] = ()) -> None:
    """Print a benchmark table (without the `hide` columns) and write all of it to `out` if given."""
    print(table.drop(columns=list(hide)).to_string(index=False, float_format=lambda x: f"{x:.{digits}f}"))
    if out:
        table.to_csv(out, index=False)


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    cfg = build_config(OOFConfig, "oof", args.profile, args.overrides)
    table = run_benchmark(cfg, args.faces, args.epochs)
    show_table(table, args.out, digits=1)
    return table


if __name__ == "__main__":
    main()
