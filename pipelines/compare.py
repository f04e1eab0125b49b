"""Stack runs side by side: `python pipelines/compare.py RUN_A RUN_B [...]`.

Why a command of its own: two stack.py runs (with and without a learner family, two face settings,
two corpora's folds) each rank their own configurations, but their figures come from different
videos and different resamples, so putting their comparison.csv rows next to each other says
nothing about which is better. This reads each run's per-video outer-CV predictions
(`cv_predictions.parquet`, written by stack.py beside its leaderboard), keeps the labelled videos
all runs share, and scores the chosen configurations on exactly those with paired group-bootstrap
intervals (every run on the same resampled groups), against the first run.

    python pipelines/compare.py SOURCE SOURCE [...] [--out compare.html] [--replicates N]

A SOURCE is a stack output folder (or its cv_predictions.parquet), or the MLflow run id of a
stack-sweep run, optionally with `@CONFIG` to pick a configuration (default: the run's own leader,
plus its nested selection when it has one). The page is the leaderboard's, self-contained.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import mlflow
from features.common import atomic_write_text
from meta.metrics import score
from meta.nested import NESTED_CONFIG
from meta.resampling import DEFAULT_LEVEL, DEFAULT_REPLICATES
from pipelines.stacking import leaderboard
from pipelines.stacking.leaderboard import KEY_COLUMNS, NESTED_META, PREDICTIONS_FILE
from pipelines.tracking import default_tracking_uri

log = logging.getLogger(__name__)

CONFIG_SEP = "@"  # SOURCE@CONFIG (configuration names use ':', '+', '[' and '-', never '@')
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
RUN_META = "run"  # the meta column of a compared configuration (it is a run's pick, not a sweep member)
DEFAULT_OUT = "compare.html"


class CompareError(ValueError):
    """The runs cannot be compared (no shared videos, an unknown configuration, a missing file)."""


@dataclass(frozen=True)
class Source:
    where: str  # a folder, a cv_predictions.parquet, or an MLflow run id
    config: str | None = None

    @classmethod
    def parse(cls, text: str) -> Source:
        """`where[@config]`; a path that exists is taken whole (it may hold an '@')."""
        if Path(text).exists() or CONFIG_SEP not in text:
            return cls(text)
        where, config = text.rsplit(CONFIG_SEP, 1)
        return cls(where, config or None)

    @property
    def label(self) -> str:
        path = Path(self.where)
        if RUN_ID.match(self.where) and not path.exists():
            return self.where[:8]
        return path.parent.name if path.suffix == ".parquet" else path.name

    def load(self) -> pd.DataFrame:
        """The source's cv_predictions table (from the folder, or the run's artifacts)."""
        path = Path(self.where)
        if path.is_dir():
            path = path / PREDICTIONS_FILE
        if not path.exists():
            if not RUN_ID.match(self.where):
                raise CompareError(f"{self.where}: no {PREDICTIONS_FILE} (a stack output folder written by a "
                                   "stack.py with the leaderboard, or a stack-sweep run id)")
            path = Path(mlflow.artifacts.download_artifacts(run_id=self.where, artifact_path=PREDICTIONS_FILE))
        frame = pd.read_parquet(path)
        missing = [c for c in KEY_COLUMNS if c not in frame.columns]
        if missing:
            raise CompareError(f"{path}: lacks {missing}")
        return frame


@dataclass
class CompareResult:
    frame: pd.DataFrame  # the shared videos: KEY_COLUMNS + one column per compared configuration
    columns: list[str]  # "label: config", the first is the reference
    board: leaderboard.Board
    sources: list[Source]
    n_dropped: int  # shared videos left out because the runs disagree on their label


def _picks(source: Source, frame: pd.DataFrame) -> list[str]:
    """The configurations compared from one run: the one asked for, or its leader (+ nested)."""
    configs = [c for c in frame.columns if c not in KEY_COLUMNS]
    if source.config is not None:
        if source.config not in configs:
            raise CompareError(f"{source.where}: no configuration {source.config!r}; it has {configs}")
        return [source.config]
    y = frame["label"].to_numpy(dtype=float)
    pickable = [c for c in configs if c != NESTED_CONFIG]
    loss = {c: score(y, frame[c].to_numpy(dtype=float))["log_loss"] for c in pickable}
    return [min(pickable, key=loss.get)] + ([NESTED_CONFIG] if NESTED_CONFIG in configs else [])


def compare(sources: list[Source], n_replicates: int = DEFAULT_REPLICATES, seed: int = 0,
            level: float = DEFAULT_LEVEL) -> CompareResult:
    """Join the runs on the labelled videos they share and rank their picks with paired intervals
    against the first run's first pick. Groups are the first run's (the runs should share them:
    a video's original does not change between runs)."""
    if len(sources) < 2:
        raise CompareError("give two or more runs to compare")
    labels = [s.label for s in sources]
    labels = [f"{lab} ({i + 1})" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]
    merged, columns, metas, n_dropped = None, [], [], 0
    for source, label in zip(sources, labels):
        frame = source.load()
        picks = _picks(source, frame)
        named = {c: f"{label}: {c}" for c in picks}
        part = frame[list(KEY_COLUMNS) + picks].rename(columns=named)
        columns += list(named.values())
        metas += [NESTED_META if c == NESTED_CONFIG else RUN_META for c in picks]
        if merged is None:
            merged = part
        else:
            part = part.drop(columns=["group", "fold"]).rename(columns={"label": "_label"})
            merged = merged.merge(part, on="video_id", how="inner")
            agree = merged["label"] == merged["_label"]
            n_dropped += int((~agree).sum())
            if not agree.all():
                log.warning("%d shared videos have different labels in %s; left out", int((~agree).sum()), label)
            merged = merged.loc[agree].drop(columns="_label")
    merged = merged.dropna(subset=columns + ["label"]).reset_index(drop=True)
    if merged.empty or merged["label"].nunique() < 2:
        raise CompareError(f"the runs share {len(merged)} labelled videos; need some of both classes")
    info = pd.DataFrame({"config": columns, "meta": metas, "calibration": "", "clip": "", "subset": "",
                         "learners": [c.split(": ", 1)[1] for c in columns]})
    board = leaderboard.rank(merged, info, reference=columns[0], n_replicates=n_replicates, seed=seed, level=level,
                             reference_label="first run")
    return CompareResult(merged, columns, board, sources, n_dropped)


def write(res: CompareResult, out: Path) -> Path:
    """The comparison page (the leaderboard's layout without the sweep-only sections)."""
    subtitle = (f"{len(res.sources)} runs on the {res.board.n_videos} labelled videos they share: "
                + "; ".join(s.where + (f"@{s.config}" if s.config else "") for s in res.sources))
    page = leaderboard.render(res.board, res.frame, "fakestack: stack runs compared", subtitle, sections=())
    return atomic_write_text(page, Path(out))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="stack output folders or stack-sweep run ids, each [@CONFIG]")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"the HTML page (default {DEFAULT_OUT})")
    parser.add_argument("--replicates", type=int, default=DEFAULT_REPLICATES, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI for run ids (default: the local sqlite store)")
    return parser.parse_args(argv)


def main(argv=None) -> CompareResult:
    args = parse_args(argv)
    mlflow.set_tracking_uri(args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri())
    try:
        res = compare([Source.parse(s) for s in args.sources], args.replicates, args.seed)
    except CompareError as err:
        raise SystemExit(f"compare.py: {err}") from err
    out = write(res, Path(args.out))
    print(leaderboard.format_board(res.board))
    print(f"page: {out}")
    return res


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
