"""How a packaged detector fares on a labelled corpus it never saw: `python -m benchmarks.transfer`.

    python pipelines/predict.py ../shared/data/ffpp-c23-dev --model MODEL --out ffpp.csv
    python -m benchmarks.transfer --pred ffpp.csv --data ../shared/data/ffpp-c23-dev

Why: a detector trained on one corpus (a face-crop set, say) is what an analyst runs on new video,
and the question is whether its verdicts carry over: do its scores still rank fakes above reals
(AUC), and are they still calibrated (log loss, and where the reals' and fakes' scores sit). This
joins predict.py's output to the corpus's labels through the project's own reader (any layout,
groups from its identity links, the manipulation method where the corpus names one) and prints,
over all videos and per method, the counts, log loss and AUC with group-bootstrap intervals, the
mean P(FAKE) of reals and fakes, and the score quartiles per class.

Every labelled video is accounted for: a video the detector gave no score (no face found, an
unreadable file) is counted by its status and left out of the figures, and one absent from the
predictions file is an error naming it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import breakdown
from features.corpus.folds import connected_groups
from features.corpus.layouts import read_videos
from meta.resampling import DEFAULT_REPLICATES

QUARTILES = (0.25, 0.5, 0.75)
SCORE = "p_fake"


def labelled(pred: pd.DataFrame, data: list[str], layout: str = "auto") -> pd.DataFrame:
    """predict.py's rows joined to the corpus's label, group and method (by resolved path)."""
    videos = read_videos(data, layout=layout)
    videos = videos.assign(group=connected_groups(videos).astype(str),
                           key=[str((Path(r) / p).resolve()) for r, p in zip(videos["root"], videos["path"])])
    pred = pred.assign(key=[str(Path(p).resolve()) for p in pred["path"]])
    missing = sorted(set(videos["key"]) - set(pred["key"]))
    if missing:
        raise ValueError(f"{len(missing)} labelled videos have no row in the predictions file, e.g. {missing[:3]}")
    cols = ["key", "video_id", "label", "group"] + [c for c in ("method",) if c in videos]
    return videos[cols].merge(pred[["key", SCORE, "status"]], on="key", how="left", validate="one_to_one")


def quartiles(table: pd.DataFrame) -> pd.DataFrame:
    """P(FAKE) quartiles of the reals and the fakes, overall and per method."""
    rows = []
    for name, part in [("all", table)] + ([(m, g) for m, g in table.groupby("method")] if "method" in table else []):
        for label, cls in ((0, "real"), (1, "fake")):
            s = part.loc[part["label"] == label, SCORE]
            if len(s) and not (name != "all" and label == 0):
                rows.append({"rows": name, "class": cls, "n": len(s),
                             **{f"q{int(q * 100)}": s.quantile(q) for q in QUARTILES}})
    return pd.DataFrame(rows)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pred", required=True, help="predict.py's output CSV")
    parser.add_argument("--data", nargs="+", required=True, help="the labelled corpus folder(s) it scored")
    parser.add_argument("--layout", default="auto", help="the corpus layout (default: detected)")
    parser.add_argument("--replicates", type=int, default=DEFAULT_REPLICATES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        table = labelled(pd.read_csv(args.pred), args.data, args.layout)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"transfer: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    scored = table[np.isfinite(table[SCORE].astype(float))]
    print(f"{len(table)} labelled videos ({int(table['label'].sum())} fake) in {table['group'].nunique()} groups; "
          f"status: {table['status'].fillna('absent').value_counts().to_dict()}; {len(scored)} with a score")
    y = scored["label"].to_numpy(int)
    methods = scored["method"].reset_index(drop=True) if "method" in scored else None
    masks = breakdown.method_masks(y, methods)
    rated = breakdown.rated(y, scored["group"].to_numpy(), {"detector": scored[SCORE].to_numpy(float)}, masks,
                            args.replicates, args.seed)
    print(breakdown.format_rated(rated))
    print("\nP(FAKE) quartiles:")
    print(quartiles(scored).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return rated


if __name__ == "__main__":
    main()
