"""Test figures per test corpus and per manipulation method: the cross-dataset report.

A detector is judged by training on one corpus and testing on others (and by how it fares on each
manipulation method it never saw). For the labelled test videos this gives, for the chosen ensemble
beside the best single learner and the plain average, the test scores over all of them, per corpus
folder (`part`) and per `method` where the corpus names one (FF++: Deepfakes, Face2Face, ...).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from meta.metrics import score

BY_ALL, BY_CORPUS, BY_METHOD = "all", "corpus", "method"
COLUMNS = ["by", "value", "config", "n", "n_fake", "log_loss", "auc", "accuracy"]


def breakdown_table(videos: pd.DataFrame, video_ids: pd.Series, y: np.ndarray | None,
                   probs: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per (grouping, value, configuration) over the test videos with a label."""
    if y is None:
        return pd.DataFrame(columns=COLUMNS)
    cols = [c for c in ("part", "method") if c in videos.columns]  # an older videos table lacks method
    info = videos.set_index("video_id").loc[video_ids.astype(str), cols].reset_index()
    known = np.isfinite(y)
    groupings = [(BY_ALL, pd.Series(BY_ALL, index=info.index))]
    if "part" in info:
        groupings.append((BY_CORPUS, info["part"].astype(str)))
    if "method" in info and info["method"].notna().any():
        groupings.append((BY_METHOD, info["method"].astype("string").fillna("unknown")))
    rows = []
    for by, keys in groupings:
        for value in sorted(pd.unique(keys[known])):
            sel = known & (keys == value).to_numpy()
            for config, p in probs.items():
                s = score(y[sel], p[sel])
                rows.append({"by": by, "value": value, "config": config, "n": int(sel.sum()),
                             "n_fake": int(y[sel].sum()), **{k: s[k] for k in ("log_loss", "auc", "accuracy")}})
    return pd.DataFrame(rows, columns=COLUMNS)


def metric_names(table: pd.DataFrame, config: str) -> dict[str, float]:
    """`test_<by>_<value>_log_loss` (and _auc) of one configuration, as MLflow metric names."""
    out = {}
    for row in table[(table["config"] == config) & (table["by"] != BY_ALL)].itertuples(index=False):
        key = re.sub(r"[^A-Za-z0-9_.-]", "_", f"test_{row.by}_{row.value}")
        out[f"{key}_log_loss"] = float(row.log_loss)
        if np.isfinite(row.auc):
            out[f"{key}_auc"] = float(row.auc)
    return out


def format_breakdown(table: pd.DataFrame) -> str:
    """The terminal lines: log loss per corpus/method, configurations side by side."""
    if table.empty or (table["by"] != BY_ALL).sum() == 0:
        return ""
    wide = table.pivot_table(index=["by", "value", "n"], columns="config", values="log_loss", sort=False)
    return "test log loss per corpus and method:\n" + wide.to_string(float_format=lambda x: f"{x:.4f}")
