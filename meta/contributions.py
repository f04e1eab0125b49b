"""Level-1 explanations: how much each feature, and so each learner, moved a video's verdict.

Pure functions over a fitted StackedEnsemble (no MLflow, no plotting). Per video:

1. **Feature contributions** to the meta-learner's output, one exact decomposition per meta-learner
   (registry CONTRIBUTORS, keyed like meta.learners.META_LEARNERS), in the unit the meta-learner
   adds up in: `base + sum(features) == output`.
   - `lgbm`: LightGBM's own SHAP values (`pred_contrib=True`): base = the expected raw score, unit logit.
   - `logreg`: coefficient x standardised design value (after imputation; a missing-value
     indicator counts for the learner whose column was missing): base = the intercept, unit logit.
   - `caruana`: weight x value of each learner's statistic: unit logit for a `logit_*` stat, else
     probability (the ensemble averages probabilities then), base 0.
   - `average` / `single` (baselines): value / number of learners present, unit probability.
2. **Per learner**: feature contributions summed by the `{learner}__{stat}` naming of
   features.aggregate; columns that belong to no learner (n_frames, n_faces, det_prob_mean) get
   their own bucket, VIDEO_BUCKET.
3. **Stages**, in logits: the meta-learner's raw output, then what calibration, the target-prior
   shift and clipping each added, ending at the logit of the submitted P(FAKE).

Videos no selected learner saw (no face) get the training prior at every stage: their feature
contributions are 0 and `no_face` marks them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from features.aggregate import SEP, stat_kind
from features.common import Registry
from meta.calibration import prior_shift, safe_logit

VIDEO_BUCKET = "video statistics"  # features that are no learner's (face counts, detection scores)
LOGIT, PROBABILITY = "logit", "probability"
STAGE_COLUMNS = ("raw", "calibration", "prior_shift", "clipping", "final")


@dataclass
class FeatureContributions:
    """One meta-learner's additive decomposition: base + features.sum(axis=1) == its output."""

    features: pd.DataFrame  # rows = videos, columns = the meta-learner's design features
    base: np.ndarray  # per row: intercept / expected value (constant for most meta-learners)
    unit: str  # LOGIT or PROBABILITY: what the parts add up to
    output: np.ndarray  # the meta-learner's output in `unit`, as its own predict computes it


@dataclass
class Contributions:
    """Everything level 1 says about a set of videos (see the module docstring)."""

    features: pd.DataFrame
    base: np.ndarray
    unit: str
    learners: pd.DataFrame  # per learner (and VIDEO_BUCKET) sums of `features`
    stages: pd.DataFrame  # STAGE_COLUMNS, logits: raw + calibration + prior_shift + clipping == final
    no_face: np.ndarray
    meta: str  # the meta-learner's registry name


Contributor = Callable[[object, pd.DataFrame], FeatureContributions]
CONTRIBUTORS: Registry[Contributor] = Registry("contribution method")


@CONTRIBUTORS.register("logreg")
def logreg_contributions(meta, Xs: pd.DataFrame) -> FeatureContributions:
    """coef_j x standardised value_j over the imputed design (and its missing indicators)."""
    imputer, scaler, lr = (meta.model_[i] for i in range(3))
    design = scaler.transform(imputer.transform(meta._design(Xs)))
    names = list(meta.feature_names_)
    if imputer.indicator_ is not None:
        names += [f"{meta.feature_names_[j]} (missing)" for j in imputer.indicator_.features_]
    parts = pd.DataFrame(design * lr.coef_[0], columns=names, index=Xs.index)
    base = np.full(len(Xs), float(lr.intercept_[0]))
    return FeatureContributions(parts, base, LOGIT, lr.decision_function(design))


@CONTRIBUTORS.register("lgbm")
def lgbm_contributions(meta, Xs: pd.DataFrame) -> FeatureContributions:
    """LightGBM's SHAP values: the last column of `pred_contrib` is the expected raw score."""
    values = Xs.to_numpy(dtype=float)
    contrib = meta.model_.predict(values, pred_contrib=True)
    parts = pd.DataFrame(contrib[:, :-1], columns=list(meta.feature_names_), index=Xs.index)
    return FeatureContributions(parts, contrib[:, -1], LOGIT, meta.model_.predict(values, raw_score=True))


@CONTRIBUTORS.register("caruana")
def caruana_contributions(meta, Xs: pd.DataFrame) -> FeatureContributions:
    """weight x value (a missing learner counts as the prior, as the ensemble does)."""
    m = meta._matrix(Xs)
    w = meta.weights_.to_numpy()
    parts = pd.DataFrame(m * w, columns=list(meta.feature_names_), index=Xs.index)
    unit = LOGIT if stat_kind(meta.stat) == "logit" else PROBABILITY
    return FeatureContributions(parts, np.zeros(len(Xs)), unit, m @ w)


def _mean_of_present(meta, Xs: pd.DataFrame) -> FeatureContributions:
    m = Xs.to_numpy(dtype=float)
    present = np.isfinite(m)
    share = np.where(present, m, 0.0) / np.maximum(present.sum(axis=1, keepdims=True), 1)
    parts = pd.DataFrame(share, columns=list(meta.feature_names_), index=Xs.index)
    return FeatureContributions(parts, np.zeros(len(Xs)), PROBABILITY, meta._predict(Xs))


CONTRIBUTORS.register("average")(_mean_of_present)
CONTRIBUTORS.register("single")(_mean_of_present)


def learner_of(feature: str, learners: list[str]) -> str:
    """The learner a design feature belongs to (`{learner}__{stat}`, maybe `... (missing)`), else
    VIDEO_BUCKET."""
    head = feature.split(SEP, 1)[0] if SEP in feature else None
    return head if head in learners else VIDEO_BUCKET


def per_learner(features: pd.DataFrame, learners: list[str]) -> pd.DataFrame:
    """Feature contributions summed per learner, learners in the given order, VIDEO_BUCKET last
    when any feature falls in it."""
    owner = [learner_of(c, learners) for c in features.columns]
    sums = features.T.groupby(owner, sort=False).sum().T
    order = learners + ([VIDEO_BUCKET] if VIDEO_BUCKET in sums.columns else [])
    return sums.reindex(columns=order, fill_value=0.0)


def stage_effects(ensemble, X: pd.DataFrame) -> pd.DataFrame:
    """Per video, in logits: the raw meta-learner output and what calibration, the target-prior
    shift and clipping each added (their sum is the logit of predict_proba)."""
    stages = ensemble.predict_stages(X)
    raw, cal, final = (safe_logit(stages[k]) for k in ("raw", "calibrated", "clipped"))
    shifted_p = prior_shift(stages["calibrated"], ensemble.prior_, ensemble.target_prior)
    shifted = safe_logit(shifted_p)
    return pd.DataFrame({"raw": raw, "calibration": cal - raw, "prior_shift": shifted - cal,
                         "clipping": final - shifted, "final": final}, index=X.index)


def contributions(ensemble, X: pd.DataFrame) -> Contributions:
    """Feature, learner and stage contributions of a fitted StackedEnsemble for the rows of X (a
    video_features frame, as predict_proba takes it)."""
    check_is_fitted(ensemble, "meta_")
    meta = ensemble.meta_
    no_face = ensemble.no_face_mask(X)
    names = list(meta.feature_names_)
    contributor = CONTRIBUTORS.get(ensemble.meta)
    probe = contributor(meta, X.loc[~no_face, names]) if (~no_face).any() else None
    columns = list(probe.features.columns) if probe is not None else names
    features = pd.DataFrame(0.0, index=X.index, columns=columns)
    # the unit is the meta-learner's (logit or probability), asked of one row even when no row has a face
    unit = probe.unit if probe is not None else contributor(meta, X.loc[X.index[:1], names]).unit
    prior = meta.prior_ if unit == PROBABILITY else float(safe_logit(meta.prior_))
    base = np.full(len(X), prior)
    if probe is not None:
        features.loc[~no_face, columns] = probe.features.to_numpy()
        base[~no_face] = probe.base
    return Contributions(features=features, base=base, unit=unit,
                         learners=per_learner(features, list(meta.learners_)),
                         stages=stage_effects(ensemble, X), no_face=no_face, meta=ensemble.meta)
