"""meta: metrics, meta-learners, calibration, clipping, target-prior shift, StackedEnsemble."""

from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks as checks

from features.aggregate import stat_kind
from meta import clipping
from meta.calibration import CALIBRATORS, build_calibrator, prior_shift
from meta.ensemble import STAGES, StackedEnsemble
from meta.learners import META_LEARNERS, build_meta
from meta.metrics import balanced_log_loss, ece, log_loss, reliability_curve, score
from meta.toy import TOY_LEARNERS, toy_video_features

PARAMS = {"single": {"learner": "good"}}  # per-name params every registered learner needs


@pytest.fixture(scope="module")
def toy():
    vf = toy_video_features(n_videos=180, no_face_every=10, seed=1)
    return vf, vf["label"].astype(int).to_numpy(), vf["group"].to_numpy()


# -- metrics ------------------------------------------------------------------------------------
def test_metrics_by_hand():
    y = np.array([1, 1, 1, 0])
    p = np.array([0.9, 0.6, 0.2, 0.3])
    fake = -(np.log(0.9) + np.log(0.6) + np.log(0.2)) / 3
    real = -np.log(0.7)
    s = score(y, p, n_bins=2)
    assert s["log_loss"] == pytest.approx((3 * fake + real) / 4)
    assert s["balanced_log_loss"] == pytest.approx((fake + real) / 2)
    assert s["accuracy"] == pytest.approx(3 / 4)
    assert s["brier"] == pytest.approx((0.01 + 0.16 + 0.64 + 0.09) / 4)
    assert s["auc"] == pytest.approx(2 / 3)  # fake 0.2 ranks below the real 0.3
    # bins [0, .5): p .2 .3, y 1 0 -> gap |.25 - .5|; [.5, 1]: p .9 .6, y 1 1 -> gap |.75 - 1|
    assert s["ece"] == pytest.approx(0.5 * 0.25 + 0.5 * 0.25)
    assert s["n"] == 4
    curve = reliability_curve(y, p, n_bins=2)
    assert curve["count"].tolist() == [2, 2] and curve["frac_pos"].tolist() == [0.5, 1.0]
    assert log_loss([1], [0.0]) == pytest.approx(-np.log(1e-15))  # clipped, finite
    assert np.isnan(balanced_log_loss([1, 1], [0.5, 0.5]))
    assert ece([1, 0], [1.0, 0.0], n_bins=10) == 0.0  # p == 1 falls in the last bin


# -- meta-learners ------------------------------------------------------------------------------
def test_registry_names():
    assert META_LEARNERS.names() == ["average", "caruana", "lgbm", "logreg", "single"]
    assert CALIBRATORS.names() == ["isotonic", "none", "platt", "temperature"]
    with pytest.raises(KeyError, match="valid: average, caruana"):
        build_meta("xgboost")


@pytest.mark.parametrize("name", META_LEARNERS.names())
def test_estimator_contract_and_no_face_prior(toy, name):
    vf, y, groups = toy
    est = build_meta(name, **PARAMS.get(name, {}))
    params = est.get_params()
    twin = clone(est)
    assert twin.get_params() == params and twin is not est
    twin.set_params(**params)
    est.fit(vf, y, groups=groups)
    assert list(est.classes_) == [0, 1]
    proba = est.predict_proba(vf)
    assert proba.shape == (len(vf), 2)
    assert np.allclose(proba.sum(axis=1), 1.0) and ((proba >= 0) & (proba <= 1)).all()
    mask = est.no_face_mask(vf)
    assert (mask == (vf["status"] == "no_face").to_numpy()).all() and mask.sum() == 18
    assert est.prior_ == pytest.approx(y.mean())
    assert np.allclose(proba[mask, 1], y.mean())  # the training prior, never an invented 0.5
    assert est.predict(vf).shape == (len(vf),)
    with pytest.raises(TypeError, match="DataFrame"):
        est.predict_proba(vf.to_numpy())


CHEAP_CHECKS = [checks.check_no_attributes_set_in_init, checks.check_parameters_default_constructible,
                checks.check_get_params_invariance, checks.check_set_params,
                checks.check_estimator_cloneable, checks.check_do_not_raise_errors_in_init_or_set_params]


@pytest.mark.parametrize("name", META_LEARNERS.names() + ["StackedEnsemble"])
def test_sklearn_cheap_estimator_checks(name):
    est = StackedEnsemble() if name == "StackedEnsemble" else build_meta(name)
    for check in CHEAP_CHECKS:
        check(name, est)


def test_meta_learners_beat_chance_and_use_learner_subsets(toy):
    vf, y, _ = toy
    est = build_meta("logreg", learners=("noise",)).fit(vf, y)
    assert est.feature_names_ == ["noise__logit_mean", "noise__confident"]
    good = build_meta("logreg", learners=("good",)).fit(vf, y)
    face = ~good.no_face_mask(vf)
    prior_only = np.full(face.sum(), y.mean())
    assert log_loss(y[face], good.predict_proba(vf)[face, 1]) < log_loss(y[face], prior_only)
    with pytest.raises(KeyError, match="not in video_features"):
        build_meta("lgbm", learners=("nope",)).fit(vf, y)


def test_baselines_are_the_columns(toy):
    vf, y, _ = toy
    face = vf["status"].eq("ok").to_numpy()
    single = build_meta("single", learner="weak").fit(vf, y).predict_proba(vf)[:, 1]
    assert np.allclose(single[face], vf.loc[face, "weak__mean"])
    avg = build_meta("average").fit(vf, y).predict_proba(vf)[:, 1]
    cols = ["good__mean", "noise__mean", "weak__mean"]
    assert np.allclose(avg[face], vf.loc[face, cols].mean(axis=1))
    with pytest.raises(KeyError, match="choose one of"):
        build_meta("single").fit(vf, y)


def test_caruana_weights(toy):
    vf, y, _ = toy
    est = build_meta("caruana", n_iter=30).fit(vf, y)
    w = est.weights_
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert w["good"] > w["weak"] and w["good"] > w["noise"]
    assert est.loss_path_[-1] <= est.loss_path_[0] + 1e-12  # greedy steps never worsen much
    logit_est = build_meta("caruana", stat="logit_mean", n_iter=10).fit(vf, y)
    assert logit_est.weights_.idxmax() == "good"


def test_lgbm_monotone_constraints_wiring(toy):
    vf, y, groups = toy
    est = build_meta("lgbm").fit(vf, y)
    expected = [int("__" in c and stat_kind(c.split("__")[1]) in ("prob", "logit"))
                for c in est.feature_names_]
    assert est.monotone_constraints_ == expected and 0 < sum(expected) < len(expected)
    assert "n_frames" in est.feature_names_ and "good__std" in est.feature_names_
    assert est.model_.get_params()["monotone_constraints"] == expected
    # raising every constrained feature never lowers P(FAKE)
    X = vf[vf["status"] == "ok"].copy()
    up = X.copy()
    cols = [c for c, m in zip(est.feature_names_, expected) if m and "logit" not in c]
    up[cols] = np.minimum(up[cols] + 0.1, 1.0)
    lcols = [c for c, m in zip(est.feature_names_, expected) if m and "logit" in c]
    up[lcols] = up[lcols] + 0.5
    assert (est.predict_proba(up)[:, 1] >= est.predict_proba(X)[:, 1] - 1e-12).all()
    free = build_meta("lgbm", monotone=False).fit(vf, y)
    assert free.monotone_constraints_ == [0] * len(expected)
    assert est.feature_importances_.index.tolist() == est.feature_names_


def test_lgbm_tree_count_by_grouped_inner_cv(toy):
    vf, y, groups = toy
    est = build_meta("lgbm", n_trees="cv", n_estimators=60).fit(vf, y, groups=groups)
    assert 1 <= est.n_trees_ <= 60 and est.model_.n_estimators == est.n_trees_
    with pytest.raises(ValueError, match="needs groups"):
        build_meta("lgbm", n_trees="cv").fit(vf, y)


# -- calibration, shift, clipping ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["platt", "isotonic", "temperature"])
@pytest.mark.parametrize("distort", ["cube", "overconfident"])
def test_calibration_improves_held_out_log_loss(name, distort):
    rng = np.random.default_rng(5)
    true_p = rng.uniform(0.02, 0.98, 4000)
    y = (rng.random(4000) < true_p).astype(int)
    reported = true_p ** 3 if distort == "cube" else expit(3 * logit(true_p))
    tr, te = slice(0, 2000), slice(2000, None)
    cal = build_calibrator(name).fit(reported[tr], y[tr])
    assert log_loss(y[te], cal.transform(reported[te])) < log_loss(y[te], reported[te]) - 0.01
    if name == "temperature" and distort == "overconfident":
        assert cal.temperature_ == pytest.approx(3.0, rel=0.2)
    assert np.array_equal(build_calibrator("none").fit(reported, y).transform(reported), reported)


def test_prior_shift_math():
    p = np.array([0.1, 0.5, 0.84, 0.99])
    shifted = prior_shift(p, train_prior=0.84, target_prior=0.5)
    assert shifted[2] == pytest.approx(0.5)  # the training prior maps to the target prior
    assert np.allclose(logit(shifted) - logit(p), logit(0.5) - logit(0.84))
    assert np.all(np.diff(shifted) > 0)  # order kept
    assert np.allclose(prior_shift(shifted, 0.5, 0.84), p)
    assert np.array_equal(prior_shift(p, 0.84, None), p)
    with pytest.raises(ValueError, match="target_prior"):
        prior_shift(p, 0.84, 1.0)


def test_choose_bounds():
    y = np.array([1] * 50 + [0] * 50)
    good = np.where(y == 1, 0.999, 0.001)
    assert clipping.choose_bounds(good, y) == (0.0, 1.0)  # nothing to fix: the widest bounds
    mistaken = good.copy()
    mistaken[0] = 0.0  # one confident mistake on a fake
    lo, hi = clipping.choose_bounds(mistaken, y)
    assert lo > 0.0 and hi == 1.0
    w = clipping.prior_weights(y[[0, 99]], train_prior=0.8, target_prior=0.5)
    assert w.tolist() == pytest.approx([0.5 / 0.8, 0.5 / 0.2])
    with pytest.raises(ValueError, match="clip bounds"):
        clipping.check_bounds((0.9, 0.1))


# -- StackedEnsemble ----------------------------------------------------------------------------
def test_stacked_ensemble_stages_and_pickle(toy):
    vf, y, groups = toy
    est = StackedEnsemble(meta="logreg", calibration="platt", clip="cv", target_prior=0.5,
                          inner_k=3, seed=0).fit(vf, y, groups)
    stages = est.predict_stages(vf)
    assert tuple(stages) == STAGES
    lo, hi = est.clip_bounds_
    assert ((stages["clipped"] >= lo) & (stages["clipped"] <= hi)).all()
    assert est.inner_oof_.shape == (len(vf),) and not np.isnan(est.inner_oof_).any()
    nf = est.no_face_mask(vf)
    assert np.allclose(stages["raw"][nf], y.mean()) and np.allclose(stages["calibrated"][nf], y.mean())
    assert np.allclose(stages["clipped"][nf], np.clip(0.5, lo, hi))  # prior shifted to the target
    assert np.array_equal(est.predict_proba(vf)[:, 1], stages["clipped"])
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        again = loads(dumps(est))
        assert np.array_equal(again.predict_proba(vf), est.predict_proba(vf))
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "meta_")


def test_stacked_ensemble_plain_and_fixed(toy):
    vf, y, groups = toy
    plain = StackedEnsemble(meta="average").fit(vf, y, groups)
    s = plain.predict_stages(vf)
    assert plain.inner_oof_ is None and plain.clip_bounds_ is None
    assert np.array_equal(s["raw"], s["calibrated"]) and np.array_equal(s["calibrated"], s["clipped"])
    fixed = StackedEnsemble(meta="average", clip=(0.1, 0.9)).fit(vf, y, groups)
    assert fixed.clip_bounds_ == (0.1, 0.9) and fixed.predict_proba(vf)[:, 1].max() <= 0.9
    with pytest.raises(ValueError, match="clip must be"):
        StackedEnsemble(meta="average", clip="sometimes").fit(vf, y, groups)


def test_inner_cv_respects_groups(toy, monkeypatch):
    vf, y, groups = toy
    seen = []
    real = StackedEnsemble._new_meta

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def fit(self, X, y, groups=None):
            self.groups = set(groups)
            self.inner.fit(X, y, groups=groups)
            return self

        def predict_proba(self, X):
            seen.append((self.groups, set(vf.loc[X.index, "group"])))
            return self.inner.predict_proba(X)

        def no_face_mask(self, X):
            return self.inner.no_face_mask(X)

    monkeypatch.setattr(StackedEnsemble, "_new_meta", lambda self: Spy(real(self)))
    StackedEnsemble(meta="logreg", calibration="isotonic", inner_k=3).fit(vf, y, groups)
    inner = [(fit, scored) for fit, scored in seen if fit != set(groups)]
    assert len(inner) == 3 and all(not (fit & scored) for fit, scored in inner)


# -- with_calibration: one meta-learner fit, every calibrator -----------------------------------
SWEEP_CALIBRATIONS = ("none", "platt", "isotonic", "temperature")
SMALL_LGBM = {"n_estimators": 20, "min_child_samples": 5}  # a tiny forest keeps the test fast


def _clip_cv_ensemble(meta: str, **kw) -> StackedEnsemble:
    params = {"learners": list(TOY_LEARNERS), **(SMALL_LGBM if meta == "lgbm" else {})}
    return StackedEnsemble(meta=meta, meta_params=params, clip="cv", inner_k=3, seed=0, **kw)


@pytest.mark.parametrize("meta", ["lgbm", "logreg", "caruana"])
def test_with_calibration_equals_a_separately_fitted_ensemble(meta):
    vf = toy_video_features(n_videos=90, no_face_every=15, seed=1)
    X, y, groups = vf, vf["label"].to_numpy(int), vf["group"].to_numpy()
    base = _clip_cv_ensemble(meta, calibration="platt").fit(X, y, groups=groups)
    before = base.predict_stages(X)
    for cal in SWEEP_CALIBRATIONS:
        derived = base.with_calibration(cal, X, y)
        alone = _clip_cv_ensemble(meta, calibration=cal).fit(X, y, groups=groups)
        assert derived.get_params() == alone.get_params() and derived.calibration == cal
        assert derived.meta_ is base.meta_  # shared, not refitted
        assert derived.clip_bounds_ == alone.clip_bounds_
        got, want = derived.predict_stages(X), alone.predict_stages(X)
        for stage in want:
            np.testing.assert_allclose(got[stage], want[stage], rtol=0, atol=1e-12)
    assert base.calibration == "platt"  # the source ensemble is untouched
    for stage, p in base.predict_stages(X).items():
        assert np.array_equal(p, before[stage])


def test_with_calibration_needs_inner_oof_and_the_training_data(toy):
    vf, y, groups = toy
    plain = StackedEnsemble(meta="logreg").fit(vf, y, groups)
    with pytest.raises(ValueError, match="needs inner OOF.*calibration='none'"):
        plain.with_calibration("platt", vf, y)
    with pytest.raises(NotFittedError):
        StackedEnsemble(meta="logreg").with_calibration("platt", vf, y)
    fitted = StackedEnsemble(meta="logreg", calibration="platt").fit(vf, y, groups)
    with pytest.raises(ValueError, match="training data of fit"):
        fitted.with_calibration("isotonic", vf.iloc[1:], y[1:])
    with pytest.raises(KeyError, match="valid"):
        fitted.with_calibration("bogus", vf, y)
