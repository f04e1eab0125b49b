"""meta.evaluate: grouped outer CV never scores a video with a model fitted on its group, and
calibration / clipping are chosen inside each outer training part."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from meta import clipping
from meta.ensemble import StackedEnsemble
from meta.evaluate import comparison_rows, comparison_table, outer_cv, outer_cv_stages
from meta.metrics import log_loss
from meta.toy import toy_video_features

FIT_LOG: list[set] = []  # module level: clone() makes new spies, the log must outlive them


class GroupSpy(ClassifierMixin, BaseEstimator):
    """Records the groups it was fitted on and refuses to score a video of those groups."""

    def fit(self, X, y, groups=None):
        self.groups_ = set(groups)
        FIT_LOG.append(self.groups_)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        scored = set(X["group"])
        assert not (scored & self.groups_), "scored a video with a model fitted on its group"
        return np.column_stack([np.full(len(X), 0.4), np.full(len(X), 0.6)])


@pytest.fixture(scope="module")
def toy():
    vf = toy_video_features(n_videos=150, no_face_every=15, seed=2)
    return vf, vf["label"].astype(int).to_numpy()


def test_outer_cv_is_grouped(toy):
    vf, y = toy
    FIT_LOG.clear()
    p = outer_cv(GroupSpy(), vf, y, vf["fold"], vf["group"])
    assert len(FIT_LOG) == 3 and np.allclose(p, 0.6)
    for k, fitted in zip(sorted(vf["fold"].unique()), FIT_LOG):
        assert fitted == set(vf.loc[vf["fold"] != k, "group"])
    broken = vf["fold"].to_numpy().copy()
    broken[0] = (broken[0] + 1) % 3  # splits group 0 over two folds
    with pytest.raises(AssertionError, match="groups"):
        outer_cv(GroupSpy(), vf, y, broken, vf["group"])
    with pytest.raises(ValueError, match="every row needs a fold"):
        outer_cv(GroupSpy(), vf, y, pd.array([pd.NA] * len(vf), dtype="Int64"), vf["group"])


def test_one_outer_cv_gives_every_stage(toy):
    vf, y = toy
    est = StackedEnsemble(meta="single", meta_params={"learner": "weak"}, calibration="platt",
                          clip="cv")
    res = outer_cv_stages(est, vf, y, vf["fold"], vf["group"])
    assert list(res.stages) == ["raw", "calibrated", "clipped"]
    assert all(not np.isnan(p).any() for p in res.stages.values())
    assert np.array_equal(res.final, outer_cv(est, vf, y, vf["fold"], vf["group"]))
    assert res.no_face.sum() == (vf["status"] == "no_face").sum()
    # the single learner's mean prob is under-confident (averaged noisy frames): Platt helps
    assert log_loss(y, res.stages["calibrated"]) < log_loss(y, res.stages["raw"])
    rows = comparison_rows("single:weak/platt", res.stages, y, extra={"learners": "weak"})
    assert [r["stage"] for r in rows] == ["raw", "calibrated", "clipped"]
    assert rows[0]["learners"] == "weak" and rows[0]["n"] == len(y)
    table = comparison_table(rows)
    assert table["log_loss"].is_monotonic_increasing


def test_clip_bounds_chosen_inside_each_outer_training_part(monkeypatch):
    """Fold 0 holds every confident mistake: scored alone it must not shape its own bounds."""
    vf = toy_video_features(n_videos=150, learners={"good": 4.0}, n_frames=10, seed=4)
    y = vf["label"].astype(int).to_numpy().copy()
    fold0 = np.flatnonzero(vf["fold"].to_numpy() == 0)
    flip = fold0[:6]
    y[flip] = 1 - y[flip]  # confident mistakes, only in fold 0
    calls = []
    real = clipping.choose_bounds

    def spy(p, yy, grid, sample_weight=None):
        calls.append((np.asarray(p).copy(), np.asarray(yy).copy()))
        return real(p, yy, grid, sample_weight)

    monkeypatch.setattr(clipping, "choose_bounds", spy)
    est = StackedEnsemble(meta="single", meta_params={"learner": "good"}, clip="cv")
    res = outer_cv_stages(est, vf, y, vf["fold"], vf["group"])
    folds = vf["fold"].to_numpy()
    assert len(calls) == 3
    for (p, yy), k in zip(calls, sorted(res.estimators)):
        fitted = res.estimators[k]
        assert len(p) == (folds != k).sum()  # only the outer training part ...
        assert np.array_equal(p, fitted.inner_oof_)  # ... and only its inner OOF predictions
        assert np.array_equal(yy, y[folds != k])
    bounds = {k: e.clip_bounds_ for k, e in res.estimators.items()}
    assert bounds[0] == (0.0, 1.0)  # its training part (folds 1, 2) has no mistake to guard
    assert bounds[1] != (0.0, 1.0) and bounds[2] != (0.0, 1.0)  # they train on fold 0's mistakes
