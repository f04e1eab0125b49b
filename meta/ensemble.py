"""StackedEnsemble: meta-learner + calibration + target-prior shift + clipping, as one estimator.

fit(X, y, groups) on an outer training part:
  1. inner grouped CV (StratifiedGroupKFold(inner_k) over `groups`) of the meta-learner over the
     training part -> inner OOF P(FAKE) (`inner_oof_`);
  2. the calibrator is fitted on those inner OOF predictions;
  3. clip bounds (clip="cv") are chosen on the calibrated (and prior-shifted) inner OOF;
  4. the meta-learner is refitted on the whole training part.
So nothing in calibration or clipping ever looks at the rows the outer CV scores (docs/design.md, rule 3).
Steps 1 and 4 do not depend on the calibration, so `with_calibration` derives a sibling ensemble
with another calibrator by redoing only steps 2-3 on the shared inner OOF (a calibration sweep
then costs one meta-learner fit, not one per calibrator); fit runs the same `_fit_calibration`.
predict_proba(X) = clip(shift(calibrate(meta.predict_proba(X)))). Videos without faces get the
training prior at every stage (then shifted and clipped like every row).
"""

from __future__ import annotations

import copy

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.validation import check_is_fitted

from meta import clipping
from meta.calibration import build_calibrator, prior_shift
from meta.learners import build_meta
from meta.metrics import DECISION_THRESHOLD

STAGES = ("raw", "calibrated", "clipped")


class StackedEnsemble(ClassifierMixin, BaseEstimator):
    """See the module docstring. `clip` is "none", "fixed" (clip_bounds), "cv" (from clip_grid),
    or a (lo, hi) tuple as shorthand for fixed bounds."""

    def __init__(self, meta: str = "lgbm", meta_params: dict | None = None,
                 calibration: str = "none", calibration_params: dict | None = None,
                 clip="none", clip_bounds=clipping.DEFAULT_CLIP_BOUNDS,
                 clip_grid=clipping.DEFAULT_CLIP_GRID, target_prior: float | None = None,
                 inner_k: int = 3, seed: int = 0):
        self.meta = meta
        self.meta_params = meta_params
        self.calibration = calibration
        self.calibration_params = calibration_params
        self.clip = clip
        self.clip_bounds = clip_bounds
        self.clip_grid = clip_grid
        self.target_prior = target_prior
        self.inner_k = inner_k
        self.seed = seed

    # -- pieces -------------------------------------------------------------------------------
    def _clip_mode(self) -> str:
        if isinstance(self.clip, (tuple, list)):
            return "fixed"
        if self.clip not in clipping.CLIP_MODES:
            raise ValueError(f"clip must be one of {clipping.CLIP_MODES} or (lo, hi), got {self.clip!r}")
        return self.clip

    def _new_meta(self):
        return build_meta(self.meta, **(self.meta_params or {}))

    def _needs_inner(self) -> bool:
        return self.calibration != "none" or self._clip_mode() == "cv"

    def _inner_oof(self, X, y, groups) -> np.ndarray:
        """P(FAKE) for every training row from a meta-learner fitted without its inner fold."""
        splitter = StratifiedGroupKFold(n_splits=self.inner_k, shuffle=True, random_state=self.seed)
        oof = np.full(len(y), np.nan)
        for tr, va in splitter.split(X, y, groups):
            if len(np.unique(y[tr])) < 2:
                raise ValueError("an inner training split holds one class only; lower inner_k")
            m = self._new_meta().fit(X.iloc[tr], y[tr], groups=groups[tr])
            oof[va] = m.predict_proba(X.iloc[va])[:, 1]
        return oof

    def fit(self, X, y, groups=None):
        y = np.asarray(y, dtype=int)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        self.classes_ = np.array([0, 1])
        self.prior_ = float(y.mean())
        self._clip_mode()  # a bad clip or calibration name fails before the costly inner CV
        self.calibrator_ = build_calibrator(self.calibration, **(self.calibration_params or {}))
        self.inner_oof_ = self._inner_oof(X, y, groups) if self._needs_inner() else None
        self.meta_ = self._new_meta().fit(X, y, groups=groups)
        return self._fit_calibration(X, y)

    def _fit_calibration(self, X, y: np.ndarray) -> StackedEnsemble:
        """Steps 2-3: fit calibrator_ on the inner OOF and choose clip_bounds_ (needs meta_,
        prior_, inner_oof_ and an unfitted calibrator_). The one code path for fit and
        with_calibration, so a derived sibling equals a fresh fit by construction."""
        mode = self._clip_mode()
        no_face = self.meta_.no_face_mask(X)
        if self.inner_oof_ is not None:
            self.calibrator_.fit(self.inner_oof_[~no_face], y[~no_face])
        if mode == "none":
            self.clip_bounds_ = None
        elif mode == "fixed":
            bounds = self.clip if isinstance(self.clip, (tuple, list)) else self.clip_bounds
            self.clip_bounds_ = clipping.check_bounds(bounds)
        else:
            shifted = self._shift(self._calibrate(self.inner_oof_, no_face))
            weights = clipping.prior_weights(y, self.prior_, self.target_prior)
            self.clip_bounds_ = clipping.choose_bounds(shifted, y, self.clip_grid, weights)
        return self

    def with_calibration(self, calibration: str, X, y,
                         calibration_params: dict | None = None) -> StackedEnsemble:
        """A new fitted ensemble with another calibrator, predicting exactly what
        `clone(self).set_params(calibration=..., calibration_params=...).fit(X, y, groups)` would.

        X, y must be the training data this ensemble was fitted on: the fitted meta-learner and
        inner OOF predictions are shared (not copied), only steps 2-3 are redone. `self` is left
        unchanged. calibration_params are the new calibrator's own (None: its defaults), since
        one calibrator's parameters rarely suit another.
        """
        check_is_fitted(self, "meta_")
        if self.inner_oof_ is None:
            raise ValueError(
                "with_calibration needs inner OOF predictions: fit the ensemble with a calibration "
                f"other than 'none' or clip='cv' (this one has calibration={self.calibration!r}, "
                f"clip={self.clip!r})")
        y = np.asarray(y, dtype=int)
        if len(y) != len(self.inner_oof_) or float(y.mean()) != self.prior_:
            raise ValueError(f"with_calibration needs the training data of fit: got {len(y)} rows "
                             f"with P(FAKE)={y.mean():.4f}, fitted on {len(self.inner_oof_)} rows "
                             f"with P(FAKE)={self.prior_:.4f}")
        sibling = copy.copy(self).set_params(calibration=calibration, calibration_params=calibration_params)
        sibling.calibrator_ = build_calibrator(calibration, **(calibration_params or {}))
        return sibling._fit_calibration(X, y)

    def _calibrate(self, raw: np.ndarray, no_face: np.ndarray) -> np.ndarray:
        cal = np.asarray(self.calibrator_.transform(raw), dtype=float)
        return np.where(no_face, self.prior_, cal)

    def _shift(self, p: np.ndarray) -> np.ndarray:
        return prior_shift(p, self.prior_, self.target_prior)

    # -- prediction ---------------------------------------------------------------------------
    def no_face_mask(self, X) -> np.ndarray:
        """Rows that got the training prior because no selected learner saw a face."""
        check_is_fitted(self, "meta_")
        return self.meta_.no_face_mask(X)

    def predict_stages(self, X) -> dict[str, np.ndarray]:
        """P(FAKE) after each stage, from one fitted model: {"raw": meta-learner output,
        "calibrated": after the calibrator, "clipped": after the target-prior shift and the clip
        (= predict_proba[:, 1])}. With calibration="none" raw == calibrated; with clip="none" and
        no target_prior calibrated == clipped."""
        check_is_fitted(self, "meta_")
        raw = self.meta_.predict_proba(X)[:, 1]
        cal = self._calibrate(raw, self.no_face_mask(X))
        final = clipping.clip_probs(self._shift(cal), self.clip_bounds_)
        return {"raw": raw, "calibrated": cal, "clipped": final}

    def predict_proba(self, X) -> np.ndarray:
        p = self.predict_stages(X)["clipped"]
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] > DECISION_THRESHOLD).astype(int)
