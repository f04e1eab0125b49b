"""meta.resampling on synthetic numbers: group bootstrap and within-class error correlation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from meta.metrics import log_loss
from meta.resampling import bootstrap_log_losses, group_weights, interval, mean_off_diagonal, row_log_losses, within_class_error_correlation


def toy(n_groups: int = 300, per_group: int = 4, seed: int = 0):
    """Groups of one real and (per_group - 1) fakes; a shared per-group shift makes errors correlated."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), per_group)
    y = np.tile([0] + [1] * (per_group - 1), n_groups)
    shift = np.repeat(rng.normal(0, 1.5, n_groups), per_group)
    z = 1.5 * (2 * y - 1) + shift
    return y, groups, z, rng


def test_group_weights_draw_whole_groups():
    codes, w = group_weights(["b", "a", "b", "c"], n_replicates=50, seed=1)
    assert codes.tolist() == [1, 0, 1, 2] and w.shape == (50, 3)
    assert (w.sum(axis=1) == 3).all() and (w >= 0).all()
    assert len(np.unique(w, axis=0)) > 1  # the replicates differ


def test_bootstrap_mean_is_the_point_estimate_and_pairs_replicates():
    y, groups, z, rng = toy()
    p_a = 1 / (1 + np.exp(-z))
    p_b = 1 / (1 + np.exp(-(z + rng.normal(0, 0.3, len(z)))))
    boot = bootstrap_log_losses(y, {"a": p_a, "b": p_b}, groups, n_replicates=2000, seed=0)
    assert abs(boot["a"].mean() - log_loss(y, p_a)) < 0.01
    lo, hi = interval(boot["a"])
    assert lo < log_loss(y, p_a) < hi
    # pairing: the interval of a difference is narrower than either column's own
    diff = boot["b"] - boot["a"]
    assert np.subtract(*interval(diff)[::-1]) < np.subtract(*interval(boot["a"])[::-1])


def test_group_bootstrap_is_wider_than_row_bootstrap_when_groups_share_errors():
    """The reason to resample groups: with a shared per-group shift, treating rows as independent
    understates the spread."""
    y, groups, z, _ = toy(per_group=6)
    p = 1 / (1 + np.exp(-z))
    by_group = bootstrap_log_losses(y, {"p": p}, groups, n_replicates=1500, seed=0)["p"]
    by_row = bootstrap_log_losses(y, {"p": p}, np.arange(len(y)), n_replicates=1500, seed=0)["p"]
    assert by_group.std() > 1.3 * by_row.std()


def test_row_log_losses_and_errors():
    y = np.array([0, 1, 1])
    p = np.array([0.2, 0.9, 0.0])
    ll = row_log_losses(y, p)
    assert ll[0] == pytest.approx(-np.log(0.8)) and ll[1] == pytest.approx(-np.log(0.9))
    assert np.isfinite(ll[2]) and ll.mean() == pytest.approx(log_loss(y, p))
    with pytest.raises(ValueError, match="predictions"):
        bootstrap_log_losses(y, {"short": p[:2]}, [0, 1, 2])


def test_within_class_error_correlation_sees_shared_mistakes_not_the_label():
    rng = np.random.default_rng(3)
    n = 4000
    y = rng.integers(0, 2, n)
    shared = rng.normal(0, 1, n)
    # a and b share their mistakes; c has its own; all three separate the classes equally well
    a = 2 * y + shared + 0.3 * rng.normal(0, 1, n)
    b = 2 * y + shared + 0.3 * rng.normal(0, 1, n)
    c = 2 * y + rng.normal(0, 1, n)
    probs = pd.DataFrame({k: 1 / (1 + np.exp(-(v - 1))) for k, v in {"a": a, "b": b, "c": c}.items()})
    corr = within_class_error_correlation(y, probs)
    assert set(corr) == {"real", "fake", "pooled"}
    assert corr["pooled"].loc["a", "b"] > 0.8
    assert abs(corr["pooled"].loc["a", "c"]) < 0.1
    assert probs.corr().loc["a", "c"] > 0.4  # across classes the label alone correlates them
    assert mean_off_diagonal(corr["pooled"]) == pytest.approx(
        (corr["pooled"].loc["a", "b"] + corr["pooled"].loc["a", "c"] + corr["pooled"].loc["b", "c"]) / 3)
    assert np.isnan(mean_off_diagonal(corr["pooled"].loc[["a"], ["a"]]))
    with pytest.raises(ValueError, match="both classes"):
        within_class_error_correlation(np.ones(3, int), probs.iloc[:3])


def test_bench_table_ratios_and_prior():
    """benchmarks.real's table: the prior is the other folds' fake share, ratios are to the
    best single learner and the plain average, and a learner that knows nothing gains nothing."""
    from benchmarks.real import AVERAGE, PRIOR, figures, fold_prior

    y, groups, z, rng = toy()
    folds = groups % 3
    prior = fold_prior(y.astype(float), folds)
    for k in range(3):
        assert np.allclose(prior[folds == k], y[folds != k].mean())
    good = 1 / (1 + np.exp(-z))
    noise = np.clip(prior + rng.normal(0, 1e-3, len(y)), 0.01, 0.99)
    preds = {"good": good, "noise": noise, AVERAGE: (good + noise) / 2, "best stack: x": good}
    table = figures(y, groups, folds, preds, ["good", "noise"], "best stack: x", n_replicates=300).set_index("config")
    assert table.loc["good", "role"] == "best single" and table.loc["best stack: x", "role"] == "best stack"
    assert table.loc["best stack: x", "over_best_single"] == pytest.approx(1.0)
    assert table.loc["good", "over_average"] == pytest.approx(
        table.loc["good", "log_loss"] / table.loc[AVERAGE, "log_loss"])
    assert table.loc["good", "gain_lo"] > 0  # clearly better than the prior
    assert table.loc["noise", "gain_lo"] < 0 < table.loc["noise", "gain_hi"] + 1e-3
    assert table.loc[PRIOR, "gain_over_prior"] == 0
    for name, row in table.iterrows():
        assert row["ll_lo"] - 1e-9 <= row["log_loss"] <= row["ll_hi"] + 1e-9, name


def test_real_profile_resolves_and_every_learner_builds():
    """`--profile real` is found, its keys are valid for both pipelines, and each learner it names
    builds (views, sizes and crop fractions that fit together)."""
    from base_learners.registry import build_learner
    from pipelines.config import build_config, profiles
    from pipelines.oof import OOFConfig, active_learners, train_configs
    from pipelines.stack import StackConfig

    assert "real" in profiles()
    cfg = build_config(OOFConfig, "oof", "real")
    learners = active_learners(cfg)
    assert len(learners) >= 2 and set(cfg.train_overrides) <= set(learners)
    train_configs(cfg, learners)
    for lcfg in learners.values():
        build_learner(lcfg)
    stack_cfg = build_config(StackConfig, "stack", "real")
    assert stack_cfg.sweep.metas


def shared_error_features(n: int = 1500, shared_sd: float = 1.5, seed: int = 0):
    """video_features (through features.aggregate, one face per video) of a strong learner and two
    weaker ones whose errors are mostly the strong one's (a shared per-video shift), plus widths:
    the shift is large on small faces only, so errors are shared there and not on large faces."""
    from scipy.special import expit

    from features.aggregate import AggregateConfig, aggregate

    rng = np.random.default_rng(seed)
    vids = np.array([f"v{i:05d}.jpg" for i in range(n)])
    label = (rng.random(n) < 0.7).astype(int)
    width = rng.uniform(100, 220, n)
    shared = rng.normal(0, shared_sd, n) * (width < 140)
    sign = 2 * label - 1
    logits = {"best": 1.6 * sign + shared + rng.normal(0, 0.6, n),
              "weak_a": 1.0 * sign + shared + rng.normal(0, 0.8, n),
              "weak_b": 0.8 * sign + shared + rng.normal(0, 0.8, n)}
    fp = pd.concat([pd.DataFrame({"video_id": vids, "frame_idx": 0, "face_idx": 0, "learner": k, "logit": z})
                    for k, z in logits.items()], ignore_index=True)
    fp["prob"] = expit(fp["logit"])
    fold = np.arange(n) % 3
    fp["fold"] = fp["video_id"].map(dict(zip(vids, fold)))
    videos = pd.DataFrame({"video_id": vids, "label": pd.array(label, dtype="Int8"), "split": "train",
                           "group": np.arange(n), "original_width": width})
    folds = pd.DataFrame({"video_id": vids, "fold": pd.array(fold, dtype="Int64")})
    status = pd.DataFrame({"video_id": vids, "status": "ok", "message": "", "n_frames": 1, "n_faces": 1})
    vf = aggregate(fp, status, videos, folds, AggregateConfig())
    return vf, videos, label, fold, list(logits)


def test_shuffle_within_class_keeps_each_class_and_fold_and_leaves_the_best_alone():
    from benchmarks.real import learner_columns, shuffle_within_class

    vf, _, y, folds, learners = shared_error_features(n=300)
    out = shuffle_within_class(vf, y, folds, ["weak_a"], np.random.default_rng(0))
    cols = learner_columns(vf, "weak_a")
    assert len(cols) > 1 and not out[cols].equals(vf[cols])
    for name in ("best", "weak_b"):
        assert out[learner_columns(vf, name)].equals(vf[learner_columns(vf, name)])
    for cls in (0, 1):
        for k in range(3):
            cell = (y == cls) & (folds == k)
            before = vf.loc[cell, cols].sort_values(cols).to_numpy()
            after = out.loc[cell, cols].sort_values(cols).to_numpy()
            assert np.array_equal(before, after)  # same rows (columns move together), same cell


def test_shuffle_bound_shows_what_shared_errors_cost():
    """Weaker learners that share the best one's errors add little; shuffled within class (same
    scores per class, independent errors) they add much more."""
    from benchmarks.real import shuffle_bound

    vf, _, y, folds, learners = shared_error_features()
    best_alone = vf["best__mean"].to_numpy()
    table = shuffle_bound(vf, y, folds, learners, "best", best_alone, n_draws=2).set_index("stack")
    measured, shuffled = table["log_loss"].iloc[2], table["log_loss"].iloc[3]
    assert table["over_best_single"].iloc[0] == pytest.approx(1.0)
    assert table["log_loss"].iloc[0] == pytest.approx(log_loss(y, best_alone))
    assert shuffled < measured - 0.02 and table["over_best_single"].iloc[3] < table["over_best_single"].iloc[2]
    assert table["spread"].iloc[3] >= 0


def test_face_widths_and_correlation_by_width():
    from benchmarks.real import correlation_by_width, face_widths

    vf, videos, y, _, learners = shared_error_features()
    widths, source = face_widths(videos, None, vf["video_id"])
    assert "original_width" in source
    assert np.allclose(widths, videos.set_index("video_id").loc[vf["video_id"], "original_width"])
    probs = vf[[f"{k}__mean" for k in learners]].set_axis(learners, axis=1)
    table = correlation_by_width(y, probs, widths)
    assert len(table) == 3 and table["videos"].sum() == len(y)
    assert table["mean_pooled_corr"].iloc[0] > table["mean_pooled_corr"].iloc[-1] + 0.3  # shared on small faces
    # no width column: face boxes that vary are used, whole-image boxes (one width) are not
    faces = pd.DataFrame({"video_id": videos["video_id"], "x0": 0.0, "x1": videos["original_width"]})
    boxes, source = face_widths(videos.drop(columns="original_width"), faces, vf["video_id"])
    assert "face boxes" in source and np.allclose(boxes, widths)
    none, why = face_widths(videos.drop(columns="original_width"), faces.assign(x1=224.0), vf["video_id"])
    assert none is None and "224" in why
    unknown = videos.assign(original_width=np.nan)  # as every reader but the face sets' gives the column
    boxes, source = face_widths(unknown, faces, vf["video_id"])
    assert "face boxes" in source and np.allclose(boxes, widths)
    none, _ = face_widths(unknown, None, vf["video_id"])
    assert none is None


def test_bootstrap_aucs_equal_weighted_auc_of_each_replicate():
    from sklearn.metrics import roc_auc_score

    from meta.resampling import bootstrap_aucs
    y, groups, z, _ = toy(n_groups=40)
    p = np.round(1 / (1 + np.exp(-z)), 1)  # ties count half
    boot = bootstrap_aucs(y, {"p": p}, groups, n_replicates=30, seed=5, chunk=7)
    codes, w = group_weights(groups, n_replicates=30, seed=5)
    want = [roc_auc_score(y, p, sample_weight=w[i][codes]) for i in range(30)]
    np.testing.assert_allclose(boot["p"].to_numpy(), want, atol=1e-12)


def test_breakdown_per_method_pairs_and_subset_stacks():
    from types import SimpleNamespace

    from benchmarks import breakdown
    y, groups, z, rng = toy(n_groups=60)
    methods = pd.Series(np.where(y == 1, np.where(np.arange(len(y)) % 2, "A", "B"), None))
    masks = breakdown.method_masks(y, methods)
    assert list(masks) == ["all", "A", "B"]
    assert (masks["A"] == ((y == 0) | (methods == "A").to_numpy())).all()  # every real, only A's fakes
    good = 1 / (1 + np.exp(-z))
    noisy = 1 / (1 + np.exp(-(z + rng.normal(0, 3, len(z)))))
    table = breakdown.rated(y, groups, {"good": good, "noisy": noisy}, masks, n_replicates=200)
    assert len(table) == 6 and (table["ll_lo"] <= table["log_loss"]).all() and (table["log_loss"] <= table["ll_hi"]).all()
    row = table.set_index(["rows", "config"]).loc[("A", "good")]
    assert row["n"] == masks["A"].sum() and row["n_fake"] == ((methods == "A").sum())
    # subset stacks: the best stacked configuration per named subset, not leave-one-out or baselines
    def spec_result(meta, subset, ll, p, learners=("meso", "spec")):
        spec = SimpleNamespace(meta=meta, subset=subset, learners=learners, name=f"{meta}[{subset}]")
        return SimpleNamespace(spec=spec, metrics={"cv_log_loss": ll}, cv_stages={"clipped": p},
                               test_stages={"clipped": p[:3]})
    results = [spec_result("logreg", "sup", 0.5, noisy), spec_result("lgbm", "sup", 0.4, good),
               spec_result("logreg", "-x", 0.1, good), spec_result("average", "sup", 0.1, good)]
    cv, test = breakdown.subset_stacks(results)
    assert list(cv) == ["best stack [sup]"] and cv["best stack [sup]"] is good and len(test["best stack [sup]"]) == 3
    pairs = breakdown.default_pairs(["best stack: x", "best stack [sup]", "meso_sbi", "meso", "spec_sbi"], "best stack: x")
    assert pairs == [("best stack: x", "best stack [sup]"), ("meso_sbi", "meso")]
    # with against without self-blended learners: the best on each side, whichever is best overall
    assert breakdown.sbi_stacks(results) == ({}, {})  # no self-blended learner: nothing to compare
    results += [spec_result("logreg", "all", 0.45, noisy, ("meso", "meso_sbi")),
                spec_result("lgbm", "all", 0.6, good, ("meso", "meso_sbi")),
                spec_result("single", "meso_sbi", 0.05, good, ("meso_sbi",))]
    cv, test = breakdown.sbi_stacks(results)
    with_sbi, without_sbi = "best stack with self-blended: logreg[all]", "best stack without self-blended: logreg[-x]"
    assert set(cv) == set(test) == {with_sbi, without_sbi} and cv[with_sbi] is noisy and cv[without_sbi] is good
    assert breakdown.default_pairs(["best stack: x", *cv], "best stack: x") == [(with_sbi, without_sbi)]
    cmp = breakdown.paired(y, groups, {"good": good, "noisy": noisy}, [("good", "noisy")], n_replicates=200)
    assert cmp.loc[0, "ratio_hi"] < 1.0 and cmp.loc[0, "diff_lo"] > 0  # the clean scores beat the noisy ones


def test_a_bad_setting_ends_the_benchmark_with_one_line_and_status_2(tmp_path, capsys):
    from benchmarks import real

    with pytest.raises(SystemExit) as err:
        real.main(["--profile", "demo", "--set", "train.epochs=abc", "--workdir", str(tmp_path)])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("benchmarks.real: error:") and "train.epochs" in lines[-1]
    assert not any("Traceback" in line for line in lines)
