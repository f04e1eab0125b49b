"""The honest headline: the whole selection procedure scored by the outer folds it never saw.

The sweep picks its best configuration by the same outer CV that scores it, so the best row's
figure is optimistic (the more configurations, the more so). Here, for each outer fold k, the
whole sweep runs on the other folds alone (their own grouped CV picks a configuration, with
calibration and clipping fitted inside as always), the pick is refit on those folds and scores
fold k. The pooled out-of-fold probabilities give the log loss of "run stack.py and take what it
picks", which is what a user deploying the stack gets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from meta.metrics import score
from meta.selection import FINAL_STAGE, EnsembleSpec, SweepConfig, evaluate_family, families

NESTED_CONFIG = "nested selection"
NESTED_META = "nested"  # in the comparison table's meta column: not a configuration one can pick
MIN_FOLDS = 3  # the inner sweep cross-validates over the other folds: it needs two of them at least


@dataclass
class NestedResult:
    prob: np.ndarray  # P(FAKE) of every labelled video, from the configuration picked without its fold
    picks: dict[int, str]  # outer fold -> the configuration the inner sweep picked
    metrics: dict[str, float]


def nested_selection(specs: list[EnsembleSpec], sweep: SweepConfig, X: pd.DataFrame, inner_k: int, seed: int,
                     n_jobs: int = 1) -> NestedResult:
    """Run the sweep inside each outer training part; see the module docstring. Needs MIN_FOLDS folds
    (callers check `can_nest` first)."""
    y = X["label"].to_numpy(dtype=int)
    folds = X["fold"].to_numpy()
    prob = np.full(len(X), np.nan)
    picks = {}
    for k in sorted(pd.unique(folds)):
        train, held = folds != k, folds == k
        Xk, Xout = X.loc[train].reset_index(drop=True), X.loc[held].reset_index(drop=True)
        args = (sweep, Xk, y[train], folds[train], Xk["group"].to_numpy(), Xout, None, inner_k, seed, None)
        if n_jobs == 1:
            batches = [evaluate_family(f, *args) for f in families(specs)]
        else:
            batches = Parallel(n_jobs=n_jobs)(delayed(evaluate_family)(f, *args) for f in families(specs))
        results = [r for batch in batches for r in batch]
        best = min(results, key=lambda r: r.metrics["cv_log_loss"])
        prob[held] = best.test_stages[FINAL_STAGE]
        picks[int(k)] = best.spec.name
    return NestedResult(prob, picks, score(y, prob))


def can_nest(X: pd.DataFrame) -> bool:
    return X["fold"].nunique() >= MIN_FOLDS


def comparison_row(res: NestedResult) -> dict:
    """Its row of the comparison table (the metrics of meta.metrics.score, like every row)."""
    picked = "; ".join(f"fold {k}: {name}" for k, name in res.picks.items())
    return {"config": NESTED_CONFIG, "meta": NESTED_META, "calibration": "picked per fold", "clip": "picked per fold",
            "learners": picked, "stage": FINAL_STAGE, **res.metrics}
