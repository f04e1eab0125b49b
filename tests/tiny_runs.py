"""The smallest real oof.py + stack.py runs, shared by the tests of the layouts that feed them: one
meso4 at 32 px over 2 grouped folds, a logistic-regression-only sweep, nothing registered."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipelines import oof, stack
from pipelines.config import build_config

TINY_OOF = ["folds.k=2", "select=[meso4]", "learners.meso4.input_size=32", "faces.crop_size=48",
            "train.epochs=2", "train.batch_size=16", "unit_workers=1", "progress=false"]
TINY_STACK = ["sweep.metas=[logreg]", "sweep.calibrations=[none]", "sweep.leave_one_out=false", "n_jobs=1",
              "plots=false", "inner_k=2", "registry_name="]


def tiny_oof(data: list[Path], work: Path, uri: str, extra: tuple[str, ...] = (),
             test_data: list[Path] = ()) -> oof.OOFRun:
    cfg = build_config(oof.OOFConfig, "oof", "demo", TINY_OOF + list(extra))
    cfg = dataclasses.replace(cfg, data=[str(d) for d in data], test_data=[str(d) for d in test_data],
                              workdir=str(work), tracking_uri=uri)
    return oof.run(cfg, profile="test")


def tiny_stack(run: oof.OOFRun, out: Path, uri: str, extra: tuple[str, ...] = ()) -> stack.StackResult:
    cfg = build_config(stack.StackConfig, "stack", "demo", TINY_STACK + list(extra))
    return stack.run(dataclasses.replace(cfg, oof_run_id=run.run_id, tracking_uri=uri, output_dir=str(out)),
                     progress=False)
