"""Probability clipping: fixed bounds, or bounds chosen from a grid by inner-CV log loss.

Clipping caps the cost of a confident mistake (log loss is unbounded). StackedEnsemble applies it
LAST, after calibration and the target-prior shift: the bounds are the final guard on the number
that is submitted, so nothing may move a probability past them afterwards (a shift applied after
clipping could push 0.98 to 0.995). When a target prior is set, bounds are chosen on the shifted
inner OOF predictions with class weights that make the inner labels follow the target prior, so
the choice is judged under the prior it will be deployed at.
"""

from __future__ import annotations

import itertools

import numpy as np

from features.losses import log_loss

CLIP_MODES = ("none", "fixed", "cv")
DEFAULT_CLIP_BOUNDS = (0.01, 0.99)
# distances from 0 (for lo) and from 1 (for hi); every lo x hi pair is tried, so the bounds may be
# asymmetric (useful when the training data is mostly fake, as DFDC's was)
DEFAULT_CLIP_GRID = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1)


def clip_probs(p, bounds: tuple[float, float] | None) -> np.ndarray:
    """np.clip to (lo, hi); None means no clipping."""
    p = np.asarray(p, dtype=float)
    if bounds is None:
        return p
    lo, hi = bounds
    return np.clip(p, lo, hi)


def check_bounds(bounds) -> tuple[float, float]:
    lo, hi = (float(b) for b in bounds)
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"clip bounds must satisfy 0 <= lo < hi <= 1, got {bounds!r}")
    return lo, hi


def weighted_log_loss(y, p, sample_weight=None) -> float:
    return log_loss(y, p, sample_weight)


def choose_bounds(p, y, grid=DEFAULT_CLIP_GRID, sample_weight=None) -> tuple[float, float]:
    """The (lo, hi) = (a, 1 - b), a and b from `grid`, minimising log loss of clip(p) against y.

    `p` must be out-of-fold predictions (StackedEnsemble passes its inner OOF), otherwise the
    choice is judged on predictions that have seen their labels. Ties go to the widest bounds
    (the least clipping), which the grid order (ascending) and the strict `<` below guarantee.
    """
    p = np.asarray(p, dtype=float)
    best, best_loss = None, np.inf
    for a, b in itertools.product(sorted(grid), sorted(grid)):
        if a >= 1.0 - b:
            continue
        loss = weighted_log_loss(y, np.clip(p, a, 1.0 - b), sample_weight)
        if loss < best_loss - 1e-12:
            best, best_loss = (float(a), float(1.0 - b)), loss
    if best is None:
        raise ValueError(f"clip grid {grid!r} gives no valid bounds")
    return best


def prior_weights(y, train_prior: float, target_prior: float | None) -> np.ndarray | None:
    """Row weights that make labels `y` (drawn at train_prior) look drawn at target_prior."""
    if target_prior is None:
        return None
    y = np.asarray(y, dtype=int)
    return np.where(y == 1, target_prior / train_prior, (1.0 - target_prior) / (1.0 - train_prior))
