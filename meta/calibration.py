"""Probability calibrators (registry CALIBRATORS) and the target-prior shift.

A calibrator maps a 1-D vector of P(FAKE) to a recalibrated P(FAKE): `fit(p, y)` then
`transform(p)`. StackedEnsemble fits it on the meta-learner's INNER out-of-fold predictions of an
outer training part, never on the rows it will score (docs/design.md leakage rule 3).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from features.common import Registry

CALIBRATORS: Registry[type] = Registry("calibrator")

LOGIT_EPS = 1e-6  # probabilities are clipped to [eps, 1-eps] before taking logits
PLATT_C = 1e4  # near-unregularised Platt scaling (two parameters, plenty of rows)
ISOTONIC_EPS = 1e-3  # isotonic output floor/ceiling: a step at exactly 0 or 1 is an infinite loss
LOG_T_BOUNDS = (-4.0, 4.0)  # temperature searched over exp(-4) .. exp(4)


def safe_logit(p, eps: float = LOGIT_EPS) -> np.ndarray:
    """logit(p) with p clipped to [eps, 1 - eps] so 0/1 probabilities give finite logits."""
    return logit(np.clip(np.asarray(p, dtype=float), eps, 1.0 - eps))


def prior_shift(p, train_prior: float, target_prior: float | None) -> np.ndarray:
    """Shift P(FAKE) from the training prior to a target prior (docs/design.md, Evaluation).

    logit(p') = logit(p) + logit(target) - logit(train): Bayes' rule for a change of class prior
    when the class-conditional evidence is unchanged. `target_prior=None` returns p unchanged.
    """
    p = np.asarray(p, dtype=float)
    if target_prior is None:
        return p
    for name, v in (("train_prior", train_prior), ("target_prior", target_prior)):
        if not 0.0 < v < 1.0:
            raise ValueError(f"{name} must lie strictly between 0 and 1, got {v}")
    return expit(safe_logit(p) + logit(target_prior) - logit(train_prior))


class _Calibrator(BaseEstimator):
    def fit(self, p, y):  # pragma: no cover - overridden
        raise NotImplementedError

    def transform(self, p) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError


@CALIBRATORS.register("none")
class IdentityCalibrator(_Calibrator):
    """No calibration: the meta-learner's probabilities pass through."""

    def fit(self, p, y):
        return self

    def transform(self, p) -> np.ndarray:
        return np.asarray(p, dtype=float)


@CALIBRATORS.register("platt")
class PlattCalibrator(_Calibrator):
    """Platt scaling: a logistic regression on logit(p) (slope and intercept)."""

    def __init__(self, C: float = PLATT_C):
        self.C = C

    def fit(self, p, y):
        self.lr_ = LogisticRegression(C=self.C, max_iter=1000)
        self.lr_.fit(safe_logit(p).reshape(-1, 1), np.asarray(y, dtype=int))
        return self

    def transform(self, p) -> np.ndarray:
        return self.lr_.predict_proba(safe_logit(p).reshape(-1, 1))[:, 1]


@CALIBRATORS.register("isotonic")
class IsotonicCalibrator(_Calibrator):
    """Isotonic regression of y on p, clipped to [eps, 1 - eps] and to the fitted range."""

    def __init__(self, eps: float = ISOTONIC_EPS):
        self.eps = eps

    def fit(self, p, y):
        self.iso_ = IsotonicRegression(y_min=self.eps, y_max=1.0 - self.eps, out_of_bounds="clip")
        self.iso_.fit(np.asarray(p, dtype=float), np.asarray(y, dtype=float))
        return self

    def transform(self, p) -> np.ndarray:
        return self.iso_.predict(np.asarray(p, dtype=float))


@CALIBRATORS.register("temperature")
class TemperatureCalibrator(_Calibrator):
    """Temperature scaling: p' = sigmoid(logit(p) / T), one scalar T fitted by log loss.

    Keeps the ranking and the 0.5 point; fixes over- or under-confidence only.
    """

    def fit(self, p, y):
        z = safe_logit(p)
        y = np.asarray(y, dtype=float)

        def loss(log_t: float) -> float:
            zt = z / np.exp(log_t)
            # log(1 + e^zt) - y*zt, written stably
            return float(np.mean(np.logaddexp(0.0, zt) - y * zt))

        res = minimize_scalar(loss, bounds=LOG_T_BOUNDS, method="bounded")
        self.temperature_ = float(np.exp(res.x))
        return self

    def transform(self, p) -> np.ndarray:
        return expit(safe_logit(p) / self.temperature_)


def build_calibrator(name: str, **params) -> _Calibrator:
    """A fresh calibrator by registry name (unknown names list the valid ones)."""
    return CALIBRATORS.get(name)(**params)
