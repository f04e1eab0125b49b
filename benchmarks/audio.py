"""What the sound learners add, per fake kind, with intervals: `python -m benchmarks.audio`.

    python -m benchmarks.audio                          # profile audio: oof.py, then stack.py
    python -m benchmarks.audio --oof-run RUN_ID         # stack an existing oof run of the profile

Runs `oof.py` and `stack.py` with the `audio` profile (benchmarks.real.run_stages: caches reused, so
a rerun resumes) and prints, from the stack's outer-CV predictions, the log loss and AUC of each
learner alone (the soundtrack learner `audio_cnn` and the lip-sync learner `lipsync` among them),
the plain average, the best stack over every learner (with audio), the best stack of the `no_audio`
subset (the face learners only), of the `no_lipsync` subset (every learner but the lip-sync one,
where the profile sweeps it) and the nested selection, for all videos and per fake kind (each kind's
fakes with every real: benchmarks.breakdown.method_masks), each with a 95 % group-bootstrap
interval; then, per kind, the paired ratios of the stack with audio to the stack without, and to
the stack without lip sync. The kinds come from the corpus's soundtracks.parquet
(features.synth.corpus), which no stage reads. Why per kind: only a face swap changes pixels, and
only the other kinds change the sound, so each learner should be blind to some kinds; a lip-sync
fake keeps the right voice, and only the lip-sync learner, which reads the mouth against the sound,
is built to see it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import breakdown, real
from features.synth.corpus import SOUND_TABLE
from meta.selection import BASELINE_METAS, FINAL_STAGE
from pipelines import stack

AUDIO_PROFILE = "audio"
NO_AUDIO_SUBSET = "no_audio"  # pipelines/profiles/audio/stack.yaml: neither sound learner
NO_LIPSYNC_SUBSET = "no_lipsync"  # pipelines/profiles/audio/stack.yaml: every learner but the lip-sync one
WITH_AUDIO = "stack with audio"
WITHOUT_AUDIO = "stack without audio"
WITHOUT_LIPSYNC = "stack without lipsync"
PAIRS = ((WITH_AUDIO, WITHOUT_AUDIO), (WITH_AUDIO, WITHOUT_LIPSYNC))  # each compared on the same videos
AUDIO_STATUS_FILE = "audio_status.parquet"


def best_of_subset(result: stack.StackResult, subset: str):
    """The stacked configuration (no baseline, no single learner) of `subset` with the lowest
    outer-CV log loss, or None."""
    stacked = [r for r in result.results if r.spec.subset == subset and r.spec.meta not in BASELINE_METAS
               and r.spec.meta != "single"]
    return min(stacked, key=lambda r: r.metrics["cv_log_loss"]) if stacked else None


def configurations(result: stack.StackResult) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(name -> outer-CV P(FAKE) per labelled video, name -> the sweep configuration it stands for):
    each learner alone, the plain average, the stacks with and without audio (and without lip sync,
    where swept), the nested selection."""
    preds, _, _ = real.predictions(result)
    preds = {k: v for k, v in preds.items() if not k.startswith("best stack")}
    names = {}
    for label, subset in ((WITH_AUDIO, breakdown.ALL), (WITHOUT_AUDIO, NO_AUDIO_SUBSET),
                          (WITHOUT_LIPSYNC, NO_LIPSYNC_SUBSET)):
        best = best_of_subset(result, subset)
        if best is not None:
            preds[label], names[label] = best.cv_stages[FINAL_STAGE], best.spec.name
    return preds, names


def fake_kinds(videos: pd.DataFrame | None, video_ids: pd.Series) -> pd.Series | None:
    """Each video's fake kind from its corpus root's soundtracks.parquet ("" for a real)."""
    if videos is None or "root" not in videos:
        return None
    tables = [pd.read_parquet(Path(r) / SOUND_TABLE) for r in videos["root"].dropna().unique()
              if (Path(r) / SOUND_TABLE).is_file()]
    if not tables:
        return None
    kinds = pd.concat(tables).set_index("video_id")["fake_kind"]
    return kinds.reindex(video_ids.astype(str)).reset_index(drop=True)


def audio_status(args, result: stack.StackResult) -> pd.DataFrame | None:
    folder = stack.oof_output_dir(replace(stack.StackConfig(), oof_dir=args.oof_dir), result.oof_run_id)
    path = None if folder is None else folder / AUDIO_STATUS_FILE
    return pd.read_parquet(path) if path is not None and path.is_file() else None


def paired_per_kind(y, groups, preds, masks, args) -> pd.DataFrame:
    """Stack with audio / each stack without (PAIRS, those swept), on each kind's rows, with the
    paired interval."""
    pairs = [(a, b) for a, b in PAIRS if a in preds and b in preds]
    out = []
    for rows, mask in masks.items():
        table = breakdown.paired(y[mask], groups[mask], {k: p[mask] for k, p in preds.items()},
                                 pairs, args.replicates, args.seed)
        out.append(table.assign(rows=rows))
    return pd.concat(out, ignore_index=True)


def report(args, result: stack.StackResult) -> pd.DataFrame:
    X, _ = stack.split_features(result.video_features)
    y, groups = X["label"].to_numpy(int), X["group"].astype(str).to_numpy()
    preds, names = configurations(result)
    videos, _ = real.oof_tables(args, result)
    masks = breakdown.method_masks(y, fake_kinds(videos, X["video_id"]))
    status = audio_status(args, result)
    if status is not None:
        print(f"\naudio_status: {status['status'].value_counts().to_dict()}")
    print(f"\n{len(y)} labelled videos ({int(y.sum())} fake) in {len(np.unique(groups))} groups; "
          f"intervals: {args.replicates} group-bootstrap replicates")
    print("  " + "\n  ".join(f"{k}: {v}" for k, v in names.items()))
    table = breakdown.rated(y, groups, preds, masks, args.replicates, args.seed)
    print("\nouter CV per fake kind (each kind's fakes with every real):")
    print(breakdown.format_rated(table))
    if WITH_AUDIO in preds and WITHOUT_AUDIO in preds:
        pairs = paired_per_kind(y, groups, preds, masks, args)
        print("\nstack with audio / without (audio, lip sync), per fake kind (paired):")
        print(breakdown.format_paired(pairs.assign(a=pairs["rows"] + ": " + pairs["a"])))
    return table


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", metavar="PATH", help="corpus folder(s) (default: the profile's)")
    real.add_stage_args(parser)
    parser.add_argument("--out", help="also write the per-kind table to this CSV")
    parser.set_defaults(profile=AUDIO_PROFILE)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    result, times = real.run_stages(args)
    table = report(args, result)
    if args.out:
        table.to_csv(args.out, index=False)
    times["total_seconds"] = time.perf_counter() - t0
    print("\n" + "  ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    print(f"stack outputs: {result.output_dir}; detector: {result.detector_uri or result.detector_note}")
    return table


if __name__ == "__main__":
    main()
