"""features.aggregate on hand-made frame tables with hand-computed statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit

from features.aggregate import AggregateConfig, aggregate, stat_kind, stat_names

CFG = AggregateConfig(quantiles=[0.25, 0.75], top_k=2, thresholds=[0.5, 0.8], confident_hi=0.8,
                      confident_lo=0.2, confident_fake_share=0.4, confident_fake_min=2,
                      confident_real_share=0.9, run_threshold=0.5)

# (video, frame, face, prob) for learner "a"; rows deliberately out of frame order
V1 = [(0, 0, 0.9), (2, 0, 0.3), (1, 0, 0.6), (2, 1, 0.95), (4, 0, 0.85), (3, 0, 0.4)]
V2 = [(f, 0, 0.1) for f in range(5)] + [(5, 0, 0.6)] + [(f, 0, 0.05) for f in range(6, 11)]
V3 = [(0, 0, 0.9), (1, 0, 0.3), (2, 0, 0.5)]
V4 = [(0, 0, 0.9), (1, 0, 0.1)]
V6 = [(7, 0, 0.7)]
VIDEOS = ["v1", "v2", "v3", "v4", "v5", "v6"]


def _rows(video, triples, learner="a"):
    return [dict(video_id=video, frame_idx=f, face_idx=k, learner=learner, fold=1, prob=p,
                 logit=float(logit(p))) for f, k, p in triples]


@pytest.fixture
def tables():
    fp = pd.DataFrame(_rows("v1", V1) + _rows("v2", V2) + _rows("v3", V3) + _rows("v4", V4)
                      + _rows("v6", V6) + _rows("v1", [(0, 0, 0.2), (1, 0, 0.4)], learner="b"))
    fp = fp.sample(frac=1.0, random_state=0).reset_index(drop=True)  # order must not matter
    status = pd.DataFrame({"video_id": VIDEOS,
                           "status": ["ok", "ok", "ok", "ok", "no_face", "ok"],
                           "message": ["", "", "", "", "no face in 8 frames", ""],
                           "n_frames": 8, "n_faces": [6, 11, 3, 2, 0, 1]})
    videos = pd.DataFrame({"video_id": VIDEOS, "label": pd.array([1, 0, 1, 0, 1, pd.NA], dtype="Int8"),
                           "split": ["train"] * 5 + ["test"], "group": [0, 0, 1, 2, 3, 4]})
    folds = pd.DataFrame({"video_id": VIDEOS, "fold": pd.array([0, 0, 1, 2, 2, pd.NA], dtype="Int64")})
    faces = pd.DataFrame([dict(video_id="v1", frame_idx=f, face_idx=k, det_prob=d)
                          for (f, k, _), d in zip(V1, [0.99, 0.9, 0.97, 0.95, 0.98, 0.96])])
    return fp, status, videos, folds, faces


def _row(vf, video):
    return vf.set_index("video_id").loc[video]


def test_every_statistic_on_a_multi_face_video(tables):
    vf = aggregate(*tables[:4], cfg=CFG, faces=tables[4])
    r = _row(vf, "v1")
    per_frame = [0.9, 0.6, 0.95, 0.4, 0.85]  # frame 2: the most-fake face (0.95) wins over 0.3
    expected = {
        "mean": 0.74, "median": 0.85, "std": np.sqrt(0.217 / 5), "min": 0.4, "max": 0.95,
        "q25": 0.6, "q75": 0.9, "top2": 0.925, "share50": 0.8, "share80": 0.6,
        "confident": 0.9,  # 3 of 5 frames > 0.8 (> 0.4 * 5 and >= 2): their mean
        "logit_mean": float(np.mean(logit(per_frame))),
        "diff_mean": (0.3 + 0.35 + 0.55 + 0.45) / 4,
        "longest_run": 3 / 5,  # frames 0-2 above 0.5, frame 3 breaks it
    }
    assert set(expected) == set(stat_names(CFG))
    for stat, value in expected.items():
        assert r[f"a__{stat}"] == pytest.approx(value, abs=1e-12), stat
    assert r["b__mean"] == pytest.approx(0.3)
    assert (r["n_frames"], r["n_faces"]) == (5, 6)
    assert r["det_prob_mean"] == pytest.approx(np.mean([0.99, 0.9, 0.97, 0.95, 0.98, 0.96]))
    assert (r["status"], r["label"], r["fold"], r["split"], r["group"]) == ("ok", 1, 0, "train", 0)
    assert r["n_sampled"] == 8


def test_confident_mean_branches(tables):
    vf = aggregate(*tables[:4], cfg=CFG).set_index("video_id")
    # real branch: 10 of 11 frames < 0.2 (> 0.9 * 11) -> mean of those
    assert vf.loc["v2", "a__confident"] == pytest.approx(0.075)
    assert vf.loc["v2", "a__mean"] == pytest.approx(1.35 / 11)
    # neither: 1 of 3 frames > 0.8 is not > 0.4 * 3 -> plain mean
    assert vf.loc["v3", "a__confident"] == pytest.approx(1.7 / 3)
    # share is enough (1 > 0.4 * 2) but fewer than confident_fake_min frames -> plain mean
    assert vf.loc["v4", "a__confident"] == pytest.approx(0.5)


def test_temporal_stats_follow_frame_order(tables):
    vf = aggregate(*tables[:4], cfg=CFG).set_index("video_id")
    assert vf.loc["v2", "a__diff_mean"] == pytest.approx((0.5 + 0.55) / 10)
    assert vf.loc["v2", "a__longest_run"] == pytest.approx(1 / 11)
    assert vf.loc["v3", "a__longest_run"] == pytest.approx(1 / 3)  # 0.5 is not above 0.5
    # a single frame: no change observed, the whole video is one run
    assert vf.loc["v6", "a__diff_mean"] == 0.0
    assert vf.loc["v6", "a__longest_run"] == 1.0
    assert vf.loc["v6", "a__std"] == 0.0


@pytest.mark.parametrize("reducer, mean, mx", [("max", 0.74, 0.95), ("mean", 0.675, 0.9),
                                               ("main_track", 0.61, 0.9)])
def test_face_reducers(tables, reducer, mean, mx):
    cfg = AggregateConfig(**{**CFG.__dict__, "face_reducer": reducer})
    r = _row(aggregate(*tables[:4], cfg=cfg), "v1")
    assert r["a__mean"] == pytest.approx(mean)
    assert r["a__max"] == pytest.approx(mx)


def test_no_face_video_is_kept_with_nan_features(tables):
    vf = aggregate(*tables[:4], cfg=CFG, faces=tables[4])
    assert list(vf["video_id"]) == VIDEOS
    r = _row(vf, "v5")
    assert r["status"] == "no_face" and r["message"] == "no face in 8 frames"
    assert r["n_frames"] == 0 and r["n_faces"] == 0 and np.isnan(r["det_prob_mean"])
    learner_cols = [c for c in vf.columns if "__" in c]
    assert r[learner_cols].isna().all()
    assert r["label"] == 1 and r["fold"] == 2
    # a learner without predictions for a video leaves NaN there only
    assert pd.isna(_row(vf, "v2")["b__mean"]) and not pd.isna(_row(vf, "v2")["a__mean"])


def test_matches_a_naive_per_video_reference():
    rng = np.random.default_rng(3)
    rows = []
    for v in range(6):
        for f in rng.choice(40, size=rng.integers(1, 12), replace=False):
            rows.append(dict(video_id=f"x{v}", frame_idx=int(f), face_idx=0, learner="m", fold=0,
                             prob=float(rng.random())))
    fp = pd.DataFrame(rows)
    fp["logit"] = logit(fp["prob"])
    ids = sorted(fp["video_id"].unique())
    status = pd.DataFrame({"video_id": ids, "status": "ok", "message": "", "n_frames": 40, "n_faces": 1})
    vf = aggregate(fp, status, pd.DataFrame({"video_id": ids}), pd.DataFrame({"video_id": ids, "fold": 0}),
                   cfg=CFG).set_index("video_id")
    for v, d in fp.sort_values("frame_idx").groupby("video_id"):
        p = d["prob"].to_numpy()
        above = np.r_[0, (p > 0.5).astype(int), 0]
        starts, ends = np.flatnonzero(np.diff(above) == 1), np.flatnonzero(np.diff(above) == -1)
        run = (ends - starts).max() if len(starts) else 0
        assert vf.loc[v, "m__std"] == pytest.approx(np.std(p))
        assert vf.loc[v, "m__q75"] == pytest.approx(np.quantile(p, 0.75))
        assert vf.loc[v, "m__top2"] == pytest.approx(np.sort(p)[::-1][:2].mean())
        assert vf.loc[v, "m__diff_mean"] == pytest.approx(np.abs(np.diff(p)).mean() if len(p) > 1 else 0.0)
        assert vf.loc[v, "m__longest_run"] == pytest.approx(run / len(p))


def test_bad_inputs_raise_clearly(tables):
    fp, status, videos, folds, _ = tables
    with pytest.raises(ValueError, match="duplicate"):
        aggregate(pd.concat([fp, fp.iloc[:1]]), status, videos, folds)
    with pytest.raises(ValueError, match="not in videos"):
        aggregate(fp, status, videos[videos.video_id != "v1"], folds)
    with pytest.raises(ValueError, match="face_status lacks"):
        aggregate(fp, status[status.video_id != "v5"], videos, folds)


def test_stat_kinds_drive_monotone_features():
    assert {s: stat_kind(s) for s in stat_names(CFG)} == {
        "mean": "prob", "median": "prob", "std": "other", "min": "prob", "max": "prob",
        "q25": "prob", "q75": "prob", "top2": "prob", "share50": "prob", "share80": "prob",
        "confident": "prob", "logit_mean": "logit", "diff_mean": "other", "longest_run": "other"}
