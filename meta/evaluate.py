"""Honest level-1 evaluation: outer CV over the level-0 folds, and comparison-table rows.

The OOF features of fold k came from level-0 models that never saw fold k, so the level-1 model is
cross-validated over the same folds (docs/design.md rule 3): fit on the other folds, score fold k.
Everything an estimator tunes (inner CV, calibration, clip bounds) happens inside its fit on the
training part. One outer CV yields every stage (raw / calibrated / clipped) of a StackedEnsemble.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone

from meta.metrics import N_BINS, score


@dataclass
class OuterCVResult:
    """stages: name -> OOF P(FAKE) for every row (raw/calibrated/clipped for a StackedEnsemble,
    just "raw" for a plain estimator); estimators: outer fold -> the model that scored it;
    no_face: rows predicted as the prior (when the estimator exposes no_face_mask)."""

    stages: dict[str, np.ndarray]
    estimators: dict[int, object] = field(default_factory=dict)
    no_face: np.ndarray | None = None

    @property
    def final(self) -> np.ndarray:
        return self.stages[list(self.stages)[-1]]


def _fit(est, X, y, groups):
    if "groups" in inspect.signature(est.fit).parameters:
        return est.fit(X, y, groups=groups)
    return est.fit(X, y)


def _stages(est, X) -> dict[str, np.ndarray]:
    if hasattr(est, "predict_stages"):
        return est.predict_stages(X)
    return {"raw": est.predict_proba(X)[:, 1]}


def outer_cv_stages(estimator, X: pd.DataFrame, y, folds, groups) -> OuterCVResult:
    """For each outer fold k: clone, fit on the other folds (with their groups, for inner CV),
    predict fold k. Asserts that no group is both trained on and scored in one split."""
    y = np.asarray(y, dtype=int)
    folds = np.asarray(pd.array(folds, dtype="Int64").to_numpy(dtype=float, na_value=np.nan))
    groups = np.asarray(groups)
    if np.isnan(folds).any():
        raise ValueError("outer_cv: every row needs a fold (pass labelled, fold-assigned videos only)")
    if not len(y) == len(folds) == len(groups) == len(X):
        raise ValueError("outer_cv: X, y, folds and groups differ in length")
    stages: dict[str, np.ndarray] = {}
    estimators, no_face = {}, np.zeros(len(y), dtype=bool)
    for k in np.unique(folds).astype(int):
        test = folds == k
        shared = set(groups[~test]) & set(groups[test])
        if shared:  # not `assert`: this guard must survive python -O
            raise AssertionError(f"outer fold {k}: groups {sorted(shared)[:5]} are in both the "
                                 "training part and the scored part")
        est = _fit(clone(estimator), X.iloc[np.flatnonzero(~test)], y[~test], groups[~test])
        X_te = X.iloc[np.flatnonzero(test)]
        for name, p in _stages(est, X_te).items():
            stages.setdefault(name, np.full(len(y), np.nan))[test] = p
        if hasattr(est, "no_face_mask"):
            no_face[test] = est.no_face_mask(X_te)
        estimators[k] = est
    return OuterCVResult(stages=stages, estimators=estimators, no_face=no_face)


def outer_cv(estimator, X: pd.DataFrame, y, folds, groups) -> np.ndarray:
    """OOF P(FAKE) of the final stage: each fold scored by a model fitted on the other folds."""
    return outer_cv_stages(estimator, X, y, folds, groups).final


def comparison_rows(config: str, stages: dict[str, np.ndarray], y, extra: dict | None = None,
                    n_bins: int = N_BINS) -> list[dict]:
    """Tidy rows {config, stage, log_loss, balanced_log_loss, auc, accuracy, brier, ece, n,
    **extra}, one per stage. Stages identical to the previous one (e.g. "calibrated" with
    calibration none) are still listed, so every config has the same stages."""
    return [{"config": config, "stage": name, **score(y, p, n_bins), **(extra or {})}
            for name, p in stages.items()]


def comparison_table(rows: list[dict]) -> pd.DataFrame:
    """Rows as a DataFrame sorted by log loss (best first)."""
    return pd.DataFrame(rows).sort_values("log_loss", kind="stable").reset_index(drop=True)
