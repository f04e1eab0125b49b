"""The MLflow UI opens the stack experiment on what matters: the configuration runs, flat, with
`cv_log_loss`, as a person opening the link stack.py prints would see them.

A tiny sqlite store is written here with the pipeline's own logging (setup_tracking's experiment
tags and saved view, runs.log_spec_run's configuration runs under a sweep run); `mlflow server`
serves it on 127.0.0.1 and headless Chromium renders `experiment_url` (the browser test is marked
`browser` and skipped without Chromium or with FAKESTACK_SKIP_BROWSER=1, tests/browser.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest
from browser import browser_or_skip, chromium

import mlflow
from meta.nested import NestedResult
from meta.selection import FINAL_STAGE, EnsembleSpec, SpecResult
from pipelines import tracking
from pipelines.stacking import runs

WINDOW = (1600, 1100)
SERVER_START_S = 120
VIRTUAL_TIME_MS = 20000
HARD_STOP_MS = 90000  # --timeout: Chromium's virtual clock can stall on this app; capture the page anyway
# (meta, calibration, learners, subset, cv_log_loss): values the UI prints exactly as written
CONFIGS = [("logreg", "platt", ("meso4", "resnext"), "all", 0.4125),
           ("lgbm", "none", ("meso4", "resnext"), "all", 0.4375),
           ("single", "none", ("meso4",), "meso4", 0.5625)]


def _result(meta, calibration, learners, subset, cv_log_loss) -> SpecResult:
    spec = EnsembleSpec(meta, calibration, "cv", learners, subset)
    ensemble = SimpleNamespace(clip_bounds_=(0.01, 0.99), meta_params={})
    return SpecResult(spec=spec, cv_stages={FINAL_STAGE: np.zeros(0)}, test_stages={}, rows=[],
                      metrics={"cv_log_loss": cv_log_loss, "cv_auc": 0.875}, ensemble=ensemble,
                      test_no_face=np.zeros(0, bool))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(tracking uri, experiment id, {config name: cv_log_loss}, sweep run name)."""
    folder = tmp_path_factory.mktemp("mlflow_ui")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    before = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        exp_id = tracking.setup_tracking(tracking.STACK_EXPERIMENT, uri, folder)
        client = mlflow.MlflowClient()
        tags = runs.common_tags(None, "test", "unknown")
        parent = client.create_run(exp_id, run_name="stack-sweep", tags={**tags, runs.KIND_TAG: "sweep"})
        results = [_result(*c) for c in CONFIGS]
        run_ids = {r.spec.name: runs.log_spec_run(client, exp_id, parent.info.run_id, r, tags, {"seed": "0"})
                   for r in results}
        runs.log_nested_picks(client, run_ids, NestedResult(np.zeros(0), {0: results[0].spec.name}, {}))
        client.set_terminated(parent.info.run_id)
    mlflow.set_tracking_uri(before)
    return uri, exp_id, {r.spec.name: r.metrics["cv_log_loss"] for r in results}, "stack-sweep"


def test_experiment_is_tagged_for_model_training_with_the_configurations_view(store):
    uri, exp_id, _, _ = store
    tags = mlflow.MlflowClient(uri).get_experiment(exp_id).tags
    assert tags[tracking.EXPERIMENT_KIND_TAG] == tracking.MODEL_TRAINING_KIND
    envelope = json.loads(tags[tracking.SAVED_VIEW_PREFIX + tracking.CONFIG_VIEW_ID])
    assert envelope["name"] == tracking.CONFIG_VIEW_NAME and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert state["searchFilter"] == tracking.CONFIG_FILTER and state["orderByAsc"] is True
    assert {"metrics.`cv_log_loss`", "tags.`fakestack.learners`"} <= set(state["selectedColumns"])
    # the view's filter is one the tracking server accepts, and it lists the configurations flat
    found = mlflow.MlflowClient(uri).search_runs([exp_id], tracking.CONFIG_FILTER,
                                                 order_by=["metrics.cv_log_loss ASC"])
    assert [r.info.run_name for r in found] == list(store[2])
    assert found[0].data.metrics[runs.NESTED_PICKS] == 1.0 and found[1].data.metrics[runs.NESTED_PICKS] == 0.0
    url = tracking.experiment_url(exp_id, "http://127.0.0.1:5000")
    assert url == (f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs?workflowType=machine_learning"
                   f"&viewStateShareKey={tracking.CONFIG_VIEW_ID}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    pytest.fail(f"mlflow server not up after {SERVER_START_S} s")


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    """The UI over the tiny store on a free local port; yields its base URL (not started at all
    when the browser test is skipped)."""
    browser_or_skip()
    uri = store[0]
    port = _free_port()
    log = (tmp_path_factory.mktemp("mlflow_server") / "server.log").open("w")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base, proc)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.browser
def test_ui_opens_on_the_runs_table_listing_configurations_with_cv_log_loss(store, server):
    browser = browser_or_skip()
    _, exp_id, configs, sweep = store
    dom = chromium(browser, WINDOW, f"--virtual-time-budget={VIRTUAL_TIME_MS}", f"--timeout={HARD_STOP_MS}",
                   "--dump-dom",
                   tracking.experiment_url(exp_id, server))
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert 'role="grid"' in page and "matching runs" in page, "the runs table is not shown"
    assert "Detect Issues" not in page, "opened on the GenAI overview"
    assert "cv_log_loss" in page and "fakestack.learners" in page
    for name, loss in configs.items():
        assert name in page and f">{loss}<" in page, f"{name} or its cv_log_loss {loss} is missing"
    assert sweep not in page, "configuration runs are folded under the sweep run instead of listed flat"
    # they come sorted by cv_log_loss, best first
    assert [page.index(name) for name in sorted(configs, key=configs.get)] == sorted(
        page.index(name) for name in configs)
