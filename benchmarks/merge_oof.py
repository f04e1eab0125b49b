"""Join the level-0 predictions of oof runs made on the same videos and folds into one oof folder:
`python -m benchmarks.merge_oof --oof-dir A B --out C`, then `benchmarks.real --oof-dir C`.

Why: a learner that needs another face cache (dlib's ResNet reads 150 px aligned chips, the real
profile's learners a 64 px cache) cannot share one oof run with the others without retraining all
of them on the new cache. Its own run on the same videos gives out-of-fold predictions on the SAME
folds (folds depend only on the videos table and the fold settings), so the level-1 question "what
does it add to that stack" is answered by stacking the union of both runs' predictions.

What is checked, so that nothing is compared on different rows: identical videos (id, label,
group, split) and identical folds in every run, no learner name in two runs, and every run's
predictions on the same face keys. The merged folder has no `units` table: its learners read two
different face caches, so no one detector can be packaged from it (stack.py says so).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from features.contract import FACE_KEY
from pipelines.stack import read_tables

log = logging.getLogger(__name__)

VIDEO_KEYS = ["video_id", "label", "group", "split"]  # what must agree between the runs' videos tables
KEPT_FROM_FIRST = ("videos", "folds", "faces", "face_status")  # written from the first run (checked equal)


class MergeError(ValueError):
    """Runs that do not describe the same videos and folds (a user's mistake: exit status 2)."""


def _same(a: pd.DataFrame, b: pd.DataFrame, cols: list[str], what: str, where: str) -> None:
    cols = [c for c in cols if c in a.columns and c in b.columns]
    left = a[cols].sort_values("video_id").reset_index(drop=True).astype(str)
    right = b[cols].sort_values("video_id").reset_index(drop=True).astype(str)
    if not left.equals(right):
        raise MergeError(f"{where}: its {what} table differs from the first run's (columns {cols})")


def merge(folders: list[Path], out: Path, keep: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Check the runs describe the same videos and folds, write the merged tables to `out`; with
    `keep`, only those learners' predictions (e.g. a stack without some learners, whose plain
    average and leave-one-out rows then leave them out too)."""
    if len(folders) < 2 and keep is None:
        raise MergeError("give at least two oof folders (or one with --learners)")
    runs = [read_tables(f) for f in folders]
    first = runs[0]
    keys = set(map(tuple, first["frame_preds"][FACE_KEY].drop_duplicates().to_numpy()))
    learners = set(first["frame_preds"]["learner"])
    for folder, tables in zip(folders[1:], runs[1:]):
        _same(first["videos"], tables["videos"], VIDEO_KEYS, "videos", str(folder))
        _same(first["folds"], tables["folds"], ["video_id", "fold"], "folds", str(folder))
        clash = learners & set(tables["frame_preds"]["learner"])
        if clash:
            raise MergeError(f"{folder}: learners {sorted(clash)} are in an earlier run too")
        learners |= set(tables["frame_preds"]["learner"])
        theirs = set(map(tuple, tables["frame_preds"][FACE_KEY].drop_duplicates().to_numpy()))
        if theirs != keys:
            raise MergeError(f"{folder}: predictions on {len(theirs ^ keys)} face keys the first run does not "
                             "share (its faces differ: merge runs of a face-image set, or of the same face cache)")
    merged = {name: first[name] for name in KEPT_FROM_FIRST if first[name] is not None}
    preds = pd.concat([t["frame_preds"] for t in runs], ignore_index=True)
    if keep is not None:
        unknown = sorted(set(keep) - learners)
        if unknown:
            raise MergeError(f"learners {unknown} are in none of the runs; they hold {sorted(learners)}")
        preds, learners = preds[preds["learner"].isin(keep)].reset_index(drop=True), set(keep)
    merged["frame_preds"] = preds
    out.mkdir(parents=True, exist_ok=True)
    for name, table in merged.items():
        table.to_parquet(out / f"{name}.parquet", index=False)
    log.info("merged %d runs (%d learners) into %s", len(folders), len(learners), out)
    return merged


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oof-dir", nargs="+", required=True, type=Path, help="the oof output folders")
    parser.add_argument("--out", required=True, type=Path, help="the merged folder (for stack.py --set oof_dir=...)")
    parser.add_argument("--learners", nargs="+", help="keep only these learners (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        merge(args.oof_dir, args.out, args.learners)
    except (MergeError, FileNotFoundError) as err:
        print(f"merge_oof: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
