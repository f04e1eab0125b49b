"""meta.resampling on synthetic numbers: group bootstrap and within-class error correlation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from meta.metrics import log_loss
from meta.resampling import (
    bootstrap_log_losses,
    group_weights,
    interval,
    mean_off_diagonal,
    row_log_losses,
    within_class_error_correlation,
)


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
    """pipelines.bench.real's table: the prior is the other folds' fake share, ratios are to the
    best single learner and the plain average, and a learner that knows nothing gains nothing."""
    from pipelines.bench.real import AVERAGE, PRIOR, figures, fold_prior

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
