"""`python -m benchmarks.stack`: both stages per corpus seed, one comparable row per seed."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks import stack as bench_stack

TINY_OOF = [
    "synth.n_originals=4", "synth.n_test_originals=1", "synth.fakes_per_original=[1, 2]",
    "synth.n_frames=8", "synth.landscape_sizes=[[256, 192]]", "synth.portrait_share=0.0",
    "synth.workers=1",
    "folds.k=2", "select=[meso4]", "learners.meso4.input_size=32",
    "faces.n_frames=3", "faces.crop_size=48", "faces.workers=1",
    "train.epochs=1", "train.batch_size=16", "train.num_threads=1", "train.device=cpu",
    "train_overrides={}", "unit_workers=1",
]
TINY_STACK = ["sweep.metas=[logreg]", "sweep.calibrations=[none]", "sweep.clip=none",
              "sweep.leave_one_out=false", "n_jobs=1", "plots=false", "inner_k=2"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench_stack")
    uri = f"sqlite:///{(tmp / 'mlflow' / 'mlflow.db').as_posix()}"
    (tmp / "mlflow").mkdir()
    out = tmp / "bench.csv"
    argv = ["--seeds", "3", "4", "--workdir", str(tmp / "work"), "--tracking-uri", uri, "--out", str(out)]
    argv += [a for s in TINY_OOF for a in ("--set", s)] + [a for s in TINY_STACK for a in ("--stack-set", s)]
    return bench_stack.main(argv), out, tmp


def test_one_row_per_seed_and_a_mean_row(table):
    t, out, _ = table
    assert list(t["seed"]) == [3, 4, "mean"]
    rows = t.iloc[:2]
    assert (rows["single_config"] == "single:meso4").all()
    ratio = rows["stack_log_loss"] / rows["single_log_loss"]
    assert ratio.to_numpy() == pytest.approx(rows["stack_over_single"].to_numpy())
    assert t.iloc[2]["stack_over_single"] == pytest.approx(rows["stack_over_single"].mean())
    assert t.iloc[2]["single_config"] == t.iloc[2]["stack_config"] == ""
    assert len(pd.read_csv(out)) == 3


def test_seeds_give_different_corpora_and_rows_match_the_stack_outputs(table):
    t, _, tmp = table
    assert t.iloc[0]["single_log_loss"] != t.iloc[1]["single_log_loss"]
    for seed, row in zip((3, 4), t.itertuples()):
        comparison = pd.read_csv(tmp / "work" / bench_stack.BENCH_DIR / f"seed_{seed}" / "comparison.csv")
        assert comparison["log_loss"].min() <= row.stack_log_loss
        single = comparison.loc[comparison["config"] == "single:meso4", "log_loss"]
        assert single.iloc[0] == pytest.approx(row.single_log_loss)
    corpora = [p for p in (tmp / "work" / "corpus").iterdir() if p.is_dir()]
    assert len(corpora) == 2


def test_the_seed_override_is_last_and_data_is_refused(tmp_path):
    oof_cfg, _ = bench_stack.seed_configs(7, "demo", ["synth.seed=1"], [], tmp_path, None)
    assert oof_cfg.synth.seed == 7 and oof_cfg.workdir == str(tmp_path)
    with pytest.raises(ValueError, match="embedded corpus"):
        bench_stack.seed_configs(7, "demo", [f"data=[{tmp_path}]"], [], tmp_path, None)
