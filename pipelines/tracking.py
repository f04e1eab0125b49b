"""The one place that knows where MLflow tracks to and how fakestack names its runs.

Local default: a sqlite store and an artifact folder under `mlflow/` in FAKESTACK_HOME (default:
the current folder), so
`mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db` shows every run. `MLFLOW_TRACKING_URI`
(or the `tracking_uri` argument) points somewhere else, such as a team server.

How the MLflow UI opens them (checked against the 3.17 UI's bundled source): the experiment page
picks its layout from the UI's "workflow type" switch (GenAI or Machine learning), kept in the
browser and defaulting to GenAI, which lands on an empty traces Overview. A `workflowType=
machine_learning` query in the URL overrides the switch and lands on the runs table. Older 3.x UIs
read the `mlflow.experimentKind` experiment tag instead, so both experiments are tagged as
model-training ones too. The stack experiment also carries a saved view (an experiment tag the
UI's "Views" menu lists) that filters to the configuration runs, flat, sorted by `cv_log_loss`,
with the metrics and tags a comparison needs as visible columns; `experiment_url` is the one link
that opens it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import mlflow
from pipelines.config import HOME, SOURCE_ROOT

MLFLOW_DIR = HOME / "mlflow"
OOF_EXPERIMENT = "fakestack-oof"
STACK_EXPERIMENT = "fakestack-stack"
SQLITE_PREFIX = "sqlite:///"

log = logging.getLogger(__name__)

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # read by MLflow 3.x UIs before the workflow switch
MODEL_TRAINING_KIND = "custom_model_development"  # the UI's "Machine learning" kind: opens on runs
WORKFLOW_PARAM = "workflowType"  # 3.17's UI: this URL query overrides the GenAI/ML switch
ML_WORKFLOW = "machine_learning"
SAVED_VIEW_PREFIX = "mlflow.sharedViewState."  # experiment tags the UI lists as saved views
VIEW_PARAM = "viewStateShareKey"  # the URL query that opens one
CONFIG_VIEW_ID = "fakestack-configurations"
CONFIG_VIEW_NAME = "configurations by cv_log_loss"
DEFAULT_UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default
# the sweep's configuration and baseline runs, without the sweep run itself: with the parent out of
# the result the UI lists its children flat instead of folded under one row
CONFIG_FILTER = "tags.`fakestack.stage` = 'stack' and tags.`fakestack.kind` != 'sweep'"
# few columns, so the tags still fit beside the metrics (the UI's Columns menu adds test_log_loss & co.)
CONFIG_METRICS = ("cv_log_loss", "cv_auc", "nested_picks")
CONFIG_TAGS = ("fakestack.learners", "fakestack.meta", "fakestack.calibration", "fakestack.clip")


def default_tracking_uri(mlflow_dir: Path = MLFLOW_DIR) -> str:
    return f"sqlite:///{(mlflow_dir / 'mlflow.db').as_posix()}"


def setup_tracking(experiment: str, tracking_uri: str | None = None, mlflow_dir: Path = MLFLOW_DIR) -> str:
    """Point MLflow at the store, create it and the experiment once, and return the experiment id.

    MLflow 3 refuses a plain-folder store by default, so the local default is sqlite; creating the
    database here, before any parallel writer starts, avoids racing schema migrations.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(mlflow_dir)
    # a sqlite store keeps its artifacts beside the database (else MLflow writes them under the cwd)
    store_dir = Path(uri[len(SQLITE_PREFIX):]).parent if uri.startswith(SQLITE_PREFIX) else None
    if store_dir is not None:
        store_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        exp_id = found.experiment_id
    else:
        location = (store_dir / "artifacts" / experiment).resolve().as_uri() if store_dir else None
        exp_id = mlflow.create_experiment(experiment, artifact_location=location)
    mark_model_training(exp_id)
    if experiment == STACK_EXPERIMENT:
        ensure_config_view(exp_id)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def _column(kind: str, key: str) -> str:
    """The UI's column key (its `makeCanonicalSortKey`): metrics.`cv_log_loss`, tags.`a.b`."""
    return f"{kind}.`{key}`"


def config_view_state() -> dict:
    """The saved view's state: the UI's search facets (filter, sort) and table columns, under the
    key names its runs page persists them with."""
    return {"searchFilter": CONFIG_FILTER, "orderByKey": _column("metrics", "cv_log_loss"), "orderByAsc": True,
            "startTime": "ALL", "lifecycleFilter": "Active",
            "selectedColumns": [_column("metrics", m) for m in CONFIG_METRICS]
            + [_column("tags", t) for t in CONFIG_TAGS]}


def config_view_tag(now_ms: int | None = None) -> tuple[str, str]:
    """(tag key, value) of the saved view: the envelope the UI parses ({name, createdAt,
    updatedAt, state}) with the state as a JSON string, uncompressed (the UI accepts both)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    envelope = {"name": CONFIG_VIEW_NAME, "createdAt": now, "updatedAt": now,
                "state": json.dumps(config_view_state(), separators=(",", ":"))}
    return SAVED_VIEW_PREFIX + CONFIG_VIEW_ID, json.dumps(envelope, separators=(",", ":"))


def mark_model_training(exp_id: str) -> None:
    """Tag the experiment as a model-training one (only when it is not already: a user who
    switched it in the UI keeps the choice)."""
    found = mlflow.MlflowClient().get_experiment(exp_id)
    if EXPERIMENT_KIND_TAG not in found.tags:
        mlflow.MlflowClient().set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)


def ensure_config_view(exp_id: str) -> None:
    """Write the saved view once; an existing one (perhaps overridden by a user) is left alone."""
    client = mlflow.MlflowClient()
    key, value = config_view_tag()
    if key not in client.get_experiment(exp_id).tags:
        client.set_experiment_tag(exp_id, key, value)
        log.info("saved view %r written on experiment %s", CONFIG_VIEW_NAME, exp_id)


def experiment_url(exp_id: str, base_url: str = DEFAULT_UI_URL, view: bool = True) -> str:
    """The UI link that opens the experiment on its runs table (machine-learning layout whatever
    the browser's GenAI/ML switch says), with the configurations view when `view`."""
    query = f"{WORKFLOW_PARAM}={ML_WORKFLOW}" + (f"&{VIEW_PARAM}={quote(CONFIG_VIEW_ID)}" if view else "")
    return f"{base_url.rstrip('/')}/#/experiments/{exp_id}/runs?{query}"


def git_commit() -> str:
    """The repo's commit for the run's tags ('unknown' outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=SOURCE_ROOT, capture_output=True, text=True, check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def ui_hint(tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """The command that starts the UI and, given an experiment name, the link that opens its runs
    table (the UI's own landing page for it is the GenAI overview, see the module docstring)."""
    uri = tracking_uri or mlflow.get_tracking_uri()
    hint = f"mlflow ui --backend-store-uri {uri}"
    found = mlflow.get_experiment_by_name(experiment) if experiment else None
    if found is not None:
        hint += f"\n  then open {experiment_url(found.experiment_id, view=_has_view(found.experiment_id))}"
    return hint


def _has_view(exp_id: str) -> bool:
    return SAVED_VIEW_PREFIX + CONFIG_VIEW_ID in mlflow.MlflowClient().get_experiment(exp_id).tags
