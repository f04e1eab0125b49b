"""Statistics of a finished stack comparison: group bootstrap intervals and learner error correlation.

Why a group bootstrap: DFDC fakes of one original share its face, scene and person, so their
errors are correlated; resampling single videos would treat 3 fakes and their original as 4
independent draws and give intervals that are too narrow. Resampling whole groups (the same
groups the folds keep apart) draws new sets of originals, which is what "another draw of the
data" means here. Every statistic is computed from per-group sums, so thousands of replicates over
thousands of videos are a matrix product.

Why the error correlation within each class: a stack can only gain where learners disagree about
the same video. Between classes the scores of any two useful learners correlate simply because
both separate fakes from reals; within one class what is left is how their mistakes co-vary, the
quantity that bounds what averaging or stacking them can recover.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from features.losses import row_log_losses

DEFAULT_REPLICATES = 1000
DEFAULT_LEVEL = 0.95  # two-sided coverage of the percentile intervals
AUC_CHUNK = 50  # replicates per step of bootstrap_aucs: a (chunk, rows) matrix, ~5 MB per 13,000 rows


def group_weights(groups, n_replicates: int = DEFAULT_REPLICATES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(codes, W): each row's group index (0..G-1) and a (n_replicates, G) matrix of how many times
    each group is drawn when G groups are drawn with replacement."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(groups)), sort=True)
    if (codes < 0).any():
        raise ValueError("groups must not contain missing values")
    n_groups = len(uniques)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_replicates, n_groups))
    weights = np.zeros((n_replicates, n_groups))
    np.add.at(weights, (np.arange(n_replicates)[:, None], draws), 1.0)
    return codes, weights


def bootstrap_log_losses(y, preds: Mapping[str, np.ndarray], groups, n_replicates: int = DEFAULT_REPLICATES,
                         seed: int = 0) -> pd.DataFrame:
    """(n_replicates, configs) log loss of each prediction vector on the same resampled groups.

    Every configuration sees the same replicate, so differences and ratios between columns are
    paired (their intervals are much narrower than the columns' own)."""
    y = np.asarray(y, dtype=float)
    codes, w = group_weights(groups, n_replicates, seed)
    n_per_group = np.bincount(codes, minlength=w.shape[1]).astype(float)
    rows = w @ n_per_group
    out = {}
    for name, p in preds.items():
        if len(p) != len(y):
            raise ValueError(f"{name}: {len(p)} predictions for {len(y)} labels")
        loss_per_group = np.bincount(codes, weights=row_log_losses(y, p), minlength=w.shape[1])
        out[name] = (w @ loss_per_group) / rows
    return pd.DataFrame(out)


def bootstrap_aucs(y, preds: Mapping[str, np.ndarray], groups, n_replicates: int = DEFAULT_REPLICATES,
                   seed: int = 0, chunk: int = AUC_CHUNK) -> pd.DataFrame:
    """(n_replicates, configs) ROC AUC of each prediction vector on the same resampled groups as
    `bootstrap_log_losses` (same seed: same replicates). A replicate weights each row by how many
    times its group was drawn; the AUC is the weighted Mann-Whitney statistic (ties count half).
    Why AUC too: across datasets a detector's scores shift as a whole, so the log loss mixes
    ranking with calibration, and the AUC says whether the ranking transferred. A replicate that
    draws no fake or no real gives NaN (`interval` ignores NaN)."""
    y = np.asarray(y, dtype=int)
    codes, w = group_weights(groups, n_replicates, seed)
    fake = y == 1
    out = {}
    for name, p in preds.items():
        if len(p) != len(y):
            raise ValueError(f"{name}: {len(p)} predictions for {len(y)} labels")
        values, level = np.unique(np.asarray(p, dtype=float), return_inverse=True)
        aucs = []
        for start in range(0, n_replicates, chunk):
            r = w[start:start + chunk][:, codes]  # (replicates, rows) row weights
            real_at = np.zeros((len(r), len(values)))
            np.add.at(real_at.T, level[~fake], r[:, ~fake].T)  # real weight at each distinct score
            below = np.cumsum(real_at, axis=1) - real_at  # real weight strictly below each score
            wins = below[:, level[fake]] + 0.5 * real_at[:, level[fake]]
            num = (r[:, fake] * wins).sum(axis=1)
            den = r[:, fake].sum(axis=1) * r[:, ~fake].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                aucs.append(np.where(den > 0, num / den, np.nan))
        out[name] = np.concatenate(aucs)
    return pd.DataFrame(out)


def interval(samples, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap samples."""
    tail = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(np.asarray(samples, dtype=float), [tail, 1.0 - tail])
    return float(lo), float(hi)


def within_class_error_correlation(y, probs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Pearson correlation of the learners' errors (p - y) among reals, among fakes, and their
    mean weighted by class size ("pooled"). Within a class p - y is p shifted by a constant, so
    this is how alike the learners' scores are where the label gives them no reason to be."""
    y = np.asarray(y, dtype=int)
    if set(np.unique(y)) != {0, 1}:
        raise ValueError("need both classes to correlate errors within each")
    errors = probs.sub(y, axis=0)
    real, fake = errors[y == 0].corr(), errors[y == 1].corr()
    n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())
    pooled = (real * n_real + fake * n_fake) / (n_real + n_fake)
    return {"real": real, "fake": fake, "pooled": pooled}


def mean_off_diagonal(corr: pd.DataFrame) -> float:
    """The mean correlation over distinct pairs of learners (NaN with fewer than two)."""
    m = corr.to_numpy(dtype=float)
    if len(m) < 2:
        return float("nan")
    return float(m[~np.eye(len(m), dtype=bool)].mean())
