"""Video-level metrics on P(FAKE), as DFDC scored them, plus reliability-curve data.

The log loss itself lives in features.losses (one clipping, 1e-15, for every stage).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.losses import row_log_losses

N_BINS = 10  # default number of equal-width bins for ECE and the reliability curve
DECISION_THRESHOLD = 0.5  # accuracy threshold on P(FAKE)


def _arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    p = np.asarray(p, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y and p differ in length: {y.shape[0]} vs {p.shape[0]}")
    if np.isnan(y).any() or np.isnan(p).any():
        raise ValueError("y and p must not contain NaN (score labelled rows with a probability)")
    return y, p


def log_loss(y, p) -> float:
    """Mean binary cross-entropy, natural log, probabilities clipped at 1e-15."""
    y, p = _arrays(y, p)
    return float(row_log_losses(y, p).mean()) if len(y) else float("nan")


def balanced_log_loss(y, p) -> float:
    """Mean of the real-only and fake-only log losses: the log loss under a 50/50 prior.

    NaN when a class is absent (the quantity is undefined then).
    """
    y, p = _arrays(y, p)
    losses = row_log_losses(y, p)
    if not ((y == 1).any() and (y == 0).any()):
        return float("nan")
    return float(0.5 * (losses[y == 1].mean() + losses[y == 0].mean()))


def reliability_curve(y, p, n_bins: int = N_BINS) -> pd.DataFrame:
    """Equal-width bins of P(FAKE): bin, lo, hi, mean_pred, frac_pos, count (empty bins: NaN, 0)."""
    y, p = _arrays(y, p)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.floor(p * n_bins).astype(int), 0, n_bins - 1)  # p == 1 joins the last bin
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(idx, weights=p, minlength=n_bins) / count
        frac_pos = np.bincount(idx, weights=y, minlength=n_bins) / count
    return pd.DataFrame({"bin": np.arange(n_bins), "lo": edges[:-1], "hi": edges[1:],
                         "mean_pred": mean_pred, "frac_pos": frac_pos, "count": count})


def ece(y, p, n_bins: int = N_BINS) -> float:
    """Expected calibration error: count-weighted mean |mean prediction - fake share| over bins."""
    curve = reliability_curve(y, p, n_bins)
    filled = curve[curve["count"] > 0]
    if filled.empty:
        return float("nan")
    gap = (filled["mean_pred"] - filled["frac_pos"]).abs()
    return float((gap * filled["count"]).sum() / filled["count"].sum())


def score(y, p, n_bins: int = N_BINS) -> dict[str, float]:
    """All headline metrics of docs/design.md for one prediction vector (P(FAKE)) against labels 0/1."""
    y, p = _arrays(y, p)
    both = bool((y == 1).any() and (y == 0).any())
    return {
        "log_loss": log_loss(y, p),
        "balanced_log_loss": balanced_log_loss(y, p),
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "accuracy": float(((p > DECISION_THRESHOLD) == (y == 1)).mean()) if len(y) else float("nan"),
        "brier": float(((p - y) ** 2).mean()) if len(y) else float("nan"),
        "ece": ece(y, p, n_bins),
        "n": int(len(y)),
    }
