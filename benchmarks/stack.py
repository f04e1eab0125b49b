"""Benchmark of what stacking adds, over several seeds of the embedded corpus.

    python -m benchmarks.stack --seeds 0 1 2              # demo profiles; ~8.5 min per seed (2 cores)
    python -m benchmarks.stack --seeds 0 1 --set train.epochs=2 --stack-set sweep.metas=[logreg]

One corpus is one draw: at demo log losses (0.05-0.1 over ~440 videos) a handful of confidently
wrong videos carry a third of the loss, so the ratio "best stack / best single learner" of one run
moves by 0.1 from one corpus seed to the next. This script reports it per seed and over seeds.

For each seed it runs the whole of `oof.py` (`oof.run`, config = oof profile + `--set` overrides +
`synth.seed=SEED`; corpus, faces and learner units are cached in the workdir, so a rerun resumes)
and then the whole of `stack.py` (`stack.run` on that oof run; outputs under
`<workdir>/bench_stack/seed_<SEED>`), and takes `report.baselines` of its comparison table:
the same figures `stack.py` prints and logs. Both stages log to MLflow as usual.

Columns: seed, best stack configuration and its log loss, best single learner and its log loss,
stack / single, plain average, stack / average, and the two stages' wall times; then a row with
the mean of each number over the seeds.

Its figures are in docs/results.md.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from benchmarks.learners import show_table
from pipelines import oof, stack
from pipelines.config import DEFAULT_PROFILE, WORK_DIR, add_config_args, build_config
from pipelines.stacking import report

DEFAULT_SEEDS = (0, 1, 2)
BENCH_DIR = "bench_stack"  # under the workdir
RATIO_COLUMNS = ("stack_over_single", "stack_over_average")


def seed_configs(seed: int, profile: str, oof_overrides: list[str], stack_overrides: list[str],
                 workdir: Path, tracking_uri: str | None) -> tuple[oof.OOFConfig, stack.StackConfig]:
    """The two stages' configs for one corpus seed (the seed is the last override, so it wins)."""
    oof_cfg = build_config(oof.OOFConfig, oof.PIPELINE, profile, [*oof_overrides, f"synth.seed={seed}"])
    if oof_cfg.data:
        raise ValueError(f"benchmarks.stack varies the embedded corpus's seed; data={oof_cfg.data} "
                         "would ignore it (drop the data override)")
    oof_cfg = replace(oof_cfg, workdir=str(workdir), tracking_uri=tracking_uri, progress=False)
    stack_cfg = build_config(stack.StackConfig, "stack", profile, stack_overrides)
    stack_cfg = replace(stack_cfg, tracking_uri=tracking_uri, registry_name="",  # no registry version per seed
                        output_dir=str(workdir / BENCH_DIR / f"seed_{seed}"))
    return oof_cfg, stack_cfg


def bench_seed(oof_cfg: oof.OOFConfig, stack_cfg: stack.StackConfig, profile: str) -> dict:
    """Both stages on one corpus; the row of the table."""
    start = time.perf_counter()
    mlflow_dir = stack.mlflow_dir_for(oof_cfg.tracking_uri) or oof.MLFLOW_DIR
    level0 = oof.run(oof_cfg, profile=profile, mlflow_dir=mlflow_dir)
    oof_seconds = time.perf_counter() - start
    result = stack.run(replace(stack_cfg, oof_run_id=level0.run_id), progress=False)
    b = report.baselines(result.table)
    if not b:
        raise ValueError(f"seed {oof_cfg.synth.seed}: the comparison table has no stacked or "
                         "single-learner rows to compare")
    return {"seed": oof_cfg.synth.seed, **b, "oof_seconds": oof_seconds,
            "stack_seconds": time.perf_counter() - start - oof_seconds}


def bench(seeds, profile: str = DEFAULT_PROFILE, oof_overrides=(), stack_overrides=(),
          workdir: Path | None = None, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per seed (in the order given) and a last row with the mean of the numbers."""
    workdir = Path(workdir) if workdir else WORK_DIR
    rows = []
    for seed in seeds:
        cfgs = seed_configs(seed, profile, list(oof_overrides), list(stack_overrides), workdir, tracking_uri)
        rows.append(bench_seed(*cfgs, profile=profile))
        print(format_row(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    mean = table.mean(numeric_only=True).drop("seed").to_dict()
    names = {c: "" for c in ("single_config", "stack_config")}  # no configuration is "the mean"
    return pd.concat([table, pd.DataFrame([{"seed": "mean", **names, **mean}])], ignore_index=True)


def format_row(row: dict) -> str:
    return (f"seed {row['seed']}: " + report.format_baselines(row)
            + f"  [oof {row['oof_seconds']:.0f} s, stack {row['stack_seconds']:.0f} s]")


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    add_config_args(parser)  # --profile (both stages) and --set (the oof config)
    parser.add_argument("--stack-set", dest="stack_overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override of the stack config (repeatable)")
    parser.add_argument("--workdir", help="working folder (default: repo/.fakestack)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite under mlflow/)")
    parser.add_argument("--out", help="also write the table to this CSV")
    args = parser.parse_args(argv)
    table = bench(args.seeds, args.profile, args.overrides, args.stack_overrides,
                  args.workdir, args.tracking_uri)
    show_table(table, args.out, digits=4, hide=("stack_config",))
    return table


if __name__ == "__main__":
    main()
