"""MLflow logging of the stack stage: one run per ensemble configuration under a sweep run.

Runs are named after the configuration and tagged alike (`fakestack.stage=stack`, learners,
meta-learner, calibration, clipping, the oof run read, git commit) and their metrics share names
(`cv_log_loss`, `raw_cv_log_loss`, `test_log_loss`, ...) so the UI's compare view lines them up.
Child runs are written with MlflowClient batch calls: a sweep has dozens of them and one batch
per run keeps the logging a small part of the stage's minute.
"""

from __future__ import annotations

import time
from collections import Counter

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

import mlflow
from meta.nested import NestedResult
from meta.selection import SpecResult

STAGE_TAG = "fakestack.stage"
STAGE = "stack"
OOF_RUN_TAG = "fakestack.oof_run_id"
KIND_TAG = "fakestack.kind"  # sweep | config | baseline
BEST_TAG = "fakestack.best"
DETECTOR_TAG = "fakestack.detector"  # on the sweep run: the packaged detector's model URI
NESTED_PICKS = "nested_picks"  # config runs: outer folds in which nested selection picked the configuration
MAX_PARAM_CHARS = 500  # MLflow's limit on a param value (longer ones are cut with a marker)


def common_tags(oof_run_id: str | None, oof_source: str, commit: str) -> dict[str, str]:
    return {STAGE_TAG: STAGE, OOF_RUN_TAG: oof_run_id or "none", "fakestack.oof_source": oof_source,
            "fakestack.git_commit": commit, MLFLOW_GIT_COMMIT: commit}


def flat_params(data: dict, prefix: str = "") -> dict[str, str]:
    """Nested config dict -> {"a.b": "value"} with MLflow-sized values."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
        else:
            text = str(value)
            out[name] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."
    return out


def spec_tags(res: SpecResult) -> dict[str, str]:
    spec = res.spec
    return {"fakestack.learners": ",".join(spec.learners), "fakestack.meta": spec.meta,
            "fakestack.calibration": spec.calibration,
            "fakestack.clip": "none" if spec.is_baseline else spec.clip,
            "fakestack.subset": spec.subset, "fakestack.config": spec.name,
            KIND_TAG: "baseline" if spec.is_baseline else "config"}


def spec_params(res: SpecResult, shared: dict[str, str]) -> dict[str, str]:
    ens = res.ensemble
    params = {"meta": res.spec.meta, "calibration": res.spec.calibration,
              "clip": "none" if res.spec.is_baseline else res.spec.clip,
              "learners": ",".join(res.spec.learners), "n_learners": str(len(res.spec.learners)),
              "subset": res.spec.subset,
              "refit_clip_bounds": str(ens.clip_bounds_), **shared}
    params.update(flat_params(ens.meta_params or {}, "meta_params."))
    return params


def log_spec_run(client: MlflowClient, experiment_id: str, parent_run_id: str, res: SpecResult,
                 tags: dict[str, str], shared_params: dict[str, str]) -> str:
    """One finished child run for a configuration; returns its run id. Tagged best=false: the
    pipeline re-tags the winner once every configuration is in."""
    all_tags = {**tags, **spec_tags(res), MLFLOW_PARENT_RUN_ID: parent_run_id,
                MLFLOW_RUN_NAME: res.spec.name, BEST_TAG: "false"}
    run = client.create_run(experiment_id, tags=all_tags, run_name=res.spec.name)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in res.metrics.items()]
    params = [Param(k, v) for k, v in spec_params(res, shared_params).items()]
    client.log_batch(run_id, metrics=metrics, params=params)
    for name, path in res.plots.items():
        client.log_artifact(run_id, str(path), artifact_path="plots" if name.endswith(".png") else None)
    client.set_terminated(run_id)
    return run_id


def log_sweep_summary(best: SpecResult, n_configs: int, baselines: dict | None = None) -> None:
    """The chosen configuration's metrics on the (active) sweep run, under the same names as
    the child runs (so the sweep lines up with them in the compare view), and the stack's log loss
    as a share of the best single learner's and of the plain average's (stacking.report.baselines)."""
    mlflow.log_metrics(best.metrics)
    mlflow.log_metric("n_configs", n_configs)
    mlflow.log_metrics({k: v for k, v in (baselines or {}).items() if k.startswith("stack_over_")})
    mlflow.set_tags({"fakestack.best_config": best.spec.name})


def log_nested_picks(client: MlflowClient, run_ids: dict[str, str], nested: NestedResult) -> None:
    """`nested_picks` on every configuration run: in how many outer folds the nested selection
    picked it. Why on the child runs: the UI's configurations view lists them flat, and this column
    shows beside `cv_log_loss` whether the optimistic winner is also what the honest procedure
    keeps choosing (0 for the configurations it never picked, so the column sorts)."""
    picked = Counter(nested.picks.values())
    now = int(time.time() * 1000)
    for name, run_id in run_ids.items():
        client.log_batch(run_id, metrics=[Metric(NESTED_PICKS, float(picked.get(name, 0)), now, 0)])
