"""The one log loss of the project (natural log, probabilities clipped at LOG_LOSS_EPS).

Written here, at the bottom layer, so level 0 (training), level 1 (meta), the bootstrap and the
explanations all score with the same clipping; scikit-learn's clips by the float type's eps since
1.5, which would make the same predictions score differently in different places.
"""

from __future__ import annotations

import numpy as np

LOG_LOSS_EPS = 1e-15  # DFDC / classic sklearn clipping of probabilities before the log


def row_log_losses(y, p) -> np.ndarray:
    """Per-row binary cross-entropy of P(FAKE) `p` against labels `y` (0/1)."""
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def log_loss(y, p, sample_weight=None) -> float:
    """Mean (or `sample_weight`-weighted mean) of row_log_losses; NaN for no rows."""
    losses = row_log_losses(y, p)
    if not len(losses):
        return float("nan")
    return float(np.average(losses, weights=sample_weight))


def log_loss_from_logits(y, logits) -> float:
    """The same loss from logits, computed stably in float64 (no clipping needed)."""
    z = np.asarray(logits, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - np.asarray(y, dtype=np.float64) * z))
