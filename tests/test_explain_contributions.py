"""Level-1 contributions (meta.contributions): every decomposition adds up to what the fitted
ensemble computes, per video, on a synthetic video_features table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from meta.calibration import safe_logit
from meta.contributions import LOGIT, PROBABILITY, VIDEO_BUCKET, contributions
from meta.ensemble import StackedEnsemble

LEARNERS = ("alpha", "beta", "gamma")
N_VIDEOS = 160
ATOL = 1e-8


@pytest.fixture(scope="module")
def table() -> tuple[pd.DataFrame, np.ndarray]:
    """Learners of unequal skill, a few missing values, one video without any face."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, N_VIDEOS)
    cols = {}
    for skill, name in zip((2.0, 1.0, 0.3), LEARNERS):
        z = skill * (2 * y - 1) + rng.normal(0, 1, N_VIDEOS)
        p = expit(z)
        cols[f"{name}__mean"] = p
        cols[f"{name}__confident"] = np.clip(p + rng.normal(0, 0.05, N_VIDEOS), 0.01, 0.99)
        cols[f"{name}__logit_mean"] = z
        cols[f"{name}__std"] = rng.uniform(0, 0.3, N_VIDEOS)
    X = pd.DataFrame(cols)
    X.loc[5, [c for c in X.columns if c.startswith("beta__")]] = np.nan  # beta saw no face here
    X.loc[7, :] = np.nan  # nobody saw a face
    X["n_frames"] = rng.integers(4, 12, N_VIDEOS).astype(float)
    X["n_faces"] = X["n_frames"] + rng.integers(0, 3, N_VIDEOS)
    X["det_prob_mean"] = rng.uniform(0.7, 1.0, N_VIDEOS)
    return X, y


def _fit(X, y, **params) -> StackedEnsemble:
    return StackedEnsemble(**params, inner_k=3, seed=0).fit(X, y, groups=np.arange(len(y)))


def test_logistic_contributions_and_intercept_sum_to_its_logit(table):
    X, y = table
    ens = _fit(X, y, meta="logreg")
    c = contributions(ens, X)
    face = ~c.no_face
    assert c.unit == LOGIT and c.no_face[7] and face.sum() == N_VIDEOS - 1
    p_raw = ens.meta_.predict_proba(X)[:, 1]
    total = c.base + c.features.sum(axis=1).to_numpy()
    np.testing.assert_allclose(expit(total[face]), p_raw[face], atol=ATOL)
    # the per-learner buckets hold every feature, missing indicators included
    np.testing.assert_allclose(c.learners.sum(axis=1).to_numpy(), c.features.sum(axis=1).to_numpy(), atol=ATOL)
    assert list(c.learners.columns) == list(LEARNERS)  # logreg reads no video column
    assert any("(missing)" in f for f in c.features.columns)
    # the strongest learner moves the logit most, on average
    spread = c.learners.loc[face].abs().mean()
    assert spread.idxmax() == "alpha" and spread["alpha"] > spread["gamma"]


def test_stages_add_up_to_the_submitted_logit(table):
    X, y = table
    ens = _fit(X, y, meta="logreg", calibration="platt", clip=(0.05, 0.95), target_prior=0.5)
    c = contributions(ens, X)
    s = c.stages
    face = ~c.no_face  # the raw stage is what the feature contributions add up to (logreg: logits)
    np.testing.assert_allclose(s.loc[face, "raw"], (c.base + c.features.sum(axis=1).to_numpy())[face], atol=ATOL)
    np.testing.assert_allclose(s["final"], safe_logit(ens.predict_proba(X)[:, 1]), atol=ATOL)
    assert (s["clipping"].abs() > 0).any() and (s["prior_shift"].abs() > 0).any()
    assert s.loc[7, "final"] == pytest.approx(float(logit(0.5)) + s.loc[7, "clipping"], abs=ATOL)


def test_lightgbm_shap_values_sum_to_its_raw_score(table):
    X, y = table
    ens = _fit(X, y, meta="lgbm", meta_params={"n_estimators": 30})
    c = contributions(ens, X)
    face = ~c.no_face
    total = c.base + c.features.sum(axis=1).to_numpy()
    np.testing.assert_allclose(expit(total[face]), ens.meta_.predict_proba(X)[face, 1], atol=1e-6)
    assert VIDEO_BUCKET in c.learners.columns


@pytest.mark.parametrize("stat, unit", [("mean", PROBABILITY), ("logit_mean", LOGIT)])
def test_caruana_weight_times_value(table, stat, unit):
    X, y = table
    ens = _fit(X, y, meta="caruana", meta_params={"stat": stat, "n_iter": 20})
    c = contributions(ens, X)
    face = ~c.no_face
    assert c.unit == unit
    out = c.features.sum(axis=1).to_numpy()[face]
    p = expit(out) if unit == LOGIT else out
    np.testing.assert_allclose(p, ens.meta_.predict_proba(X)[face, 1], atol=ATOL)
    weights = ens.meta_.weights_
    assert (c.learners.loc[face, weights.index[weights == 0]] == 0).all().all()
