"""The one place that knows where MLflow tracks to and how fakestack names its runs.

Local default: a sqlite store and an artifact folder under `mlflow/` at the repo root, so
`mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db` shows every run. `MLFLOW_TRACKING_URI`
(or the `tracking_uri` argument) points somewhere else, such as a team server.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow

from pipelines.config import REPO_ROOT

MLFLOW_DIR = REPO_ROOT / "mlflow"
OOF_EXPERIMENT = "fakestack-oof"
STACK_EXPERIMENT = "fakestack-stack"
SQLITE_PREFIX = "sqlite:///"


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
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def git_commit() -> str:
    """The repo's commit for the run's tags ('unknown' outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def ui_hint(tracking_uri: str | None = None) -> str:
    uri = tracking_uri or mlflow.get_tracking_uri()
    return f"mlflow ui --backend-store-uri {uri}"
