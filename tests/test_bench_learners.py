"""The learner benchmark: one row per learner, rates from the training loop's own timings."""

from __future__ import annotations

import pytest

from benchmarks import learners as bench_learners
from benchmarks.learners import _steady_rate, main

OVERRIDES = ["select=[meso4, resnext]", "faces.crop_size=40", "learners.meso4.input_size=32",
             "learners.resnext.input_size=32", "learners.resnext.view=rgb", "train.batch_size=16",
             "train.device=cpu"]
TINY = ["--faces", "48", "--epochs", "2"] + [arg for o in OVERRIDES for arg in ("--set", o)]


def test_steady_rate_leaves_the_warm_up_epoch_out():
    history = [{"train_samples": 100, "train_seconds": 10.0},  # warm-up: 10 faces/s
               {"train_samples": 100, "train_seconds": 1.0}, {"train_samples": 100, "train_seconds": 3.0}]
    assert _steady_rate(history) == pytest.approx(50.0)
    assert _steady_rate(history[:1]) == pytest.approx(10.0)


def test_benchmark_table(tmp_path):
    out = tmp_path / "bench.csv"
    table = main(TINY + ["--out", str(out)])
    assert list(table["learner"]) == ["meso4", "resnext"] and out.exists()
    assert list(table["variant"]) == ["meso4", "resnext_tiny"] and set(table["device"]) == {"cpu"}
    assert list(table["input_size"]) == [32, 32] and (table["batch_size"] == 16).all()
    assert list(table["view"]) == ["highpass(0.8)", "rgb"]  # the demo's meso4, resnext set to rgb
    assert (table[["train_faces_per_s", "predict_faces_per_s"]] > 0).all().all()


def test_predict_rate_counts_every_crop(monkeypatch):
    """predict faces/s = crops per pass over the seconds of the passes after the first."""
    ticks = iter([0.0, 5.0, 10.0, 12.0])  # pass 1 takes 5 s (warm-up), pass 2 takes 2 s
    monkeypatch.setattr(bench_learners.time, "perf_counter", lambda: next(ticks))
    cfg = bench_learners.build_config(bench_learners.OOFConfig, "oof", "demo", OVERRIDES)
    name, lcfg = next(iter(bench_learners.active_learners(cfg).items()))
    tcfg = bench_learners.train_configs(cfg, {name: lcfg})[name]
    crops, labels, groups = bench_learners.random_crops(48, 40)
    monkeypatch.setattr(bench_learners, "fit", _instant_fit)
    row = bench_learners.bench_learner(lcfg, tcfg, crops, labels, groups, epochs=2)
    assert row["predict_faces_per_s"] == pytest.approx(48 / 2.0)


def _instant_fit(model, crops, labels, groups, cfg, progress=True):
    """fit's result without training (the clock is patched; only prediction is timed here)."""
    from base_learners.train import FitResult

    model.logit_offset.zero_()
    return FitResult(model.eval(), [{"train_samples": 1, "train_seconds": 1.0}])
