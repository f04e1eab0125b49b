"""Issue 31's attacks on the scorer and the server, at unit level (no training: milliseconds each).
The attacks that need a packaged detector are in tests/test_predict.py, which trains one."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from features.common import ConfigError
from meta.ensemble import StackedEnsemble
from pipelines import predict
from pipelines.scoring import package
from pipelines.scoring.detector import check_device
from pipelines.scoring.ensemble_io import EnsembleFormatError, read_ensemble, write_ensemble
from pipelines.scoring.inputs import ALLOWED_ROOTS_ENV, INPUT_COLUMNS, UPLOAD_PREFIX, check_served_path, collect_paths, request_rows

MP4_HEAD = b"\x00\x00\x00\x18ftypmp42"


def _toy_features(n: int = 80, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a__mean": rng.random(n), "a__logit_mean": rng.normal(size=n), "a__confident": rng.random(n),
                      "b__mean": rng.random(n), "b__logit_mean": rng.normal(size=n), "b__confident": rng.random(n),
                      "n_frames": rng.integers(1, 5, n), "n_faces": rng.integers(1, 5, n),
                      "det_prob_mean": rng.random(n)})
    y = (X["a__mean"] + rng.normal(0, 0.3, n) > 0.5).astype(int).to_numpy()
    X.loc[:3, [c for c in X.columns if "__" in c]] = np.nan  # no-face rows get the prior
    return X, y


@pytest.mark.parametrize("meta,calibration", [("lgbm", "isotonic"), ("logreg", "platt"), ("caruana", "temperature")])
def test_ensemble_round_trips_as_data_bit_for_bit(tmp_path, meta, calibration):
    X, y = _toy_features()
    ens = StackedEnsemble(meta=meta, calibration=calibration, clip="cv", inner_k=2).fit(X, y, np.arange(len(y)))
    files = write_ensemble(ens, tmp_path)
    assert not [f for f in files if f.suffix in (".pkl", ".pickle")]
    back = read_ensemble(tmp_path)
    assert np.array_equal(back.predict_proba(X), ens.predict_proba(X))


def test_stored_ensemble_refuses_classes_outside_the_allow_list(tmp_path):
    X, y = _toy_features()
    write_ensemble(StackedEnsemble(meta="logreg").fit(X, y), tmp_path)
    doc = (tmp_path / "ensemble.json").read_text().replace("meta.learners:LogRegMeta", "os:system")
    (tmp_path / "ensemble.json").write_text(doc)
    with pytest.raises(EnsembleFormatError, match="not allowed"):
        read_ensemble(tmp_path)


def test_stored_ensemble_arrays_load_without_pickle(tmp_path):
    X, y = _toy_features()
    write_ensemble(StackedEnsemble(meta="logreg").fit(X, y), tmp_path)
    np.save(tmp_path / "obj.npy", np.array([object()], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "ensemble.npz", a0=np.load(tmp_path / "obj.npy", allow_pickle=True))
    with pytest.raises(EnsembleFormatError):
        read_ensemble(tmp_path)


class _Marker:
    """Unpickling this creates a marker file: proof that loading ran code (never a real command)."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture(autouse=True)
def _private_tracking(tmp_path, monkeypatch):
    """Any MLflow lookup goes to a store in tmp_path, never to a mlflow.db in the working folder."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_a_pickled_python_model_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "marker"
    folder = tmp_path / "model"
    (folder / "artifacts" / "detector").mkdir(parents=True)
    (folder / "python_model.pkl").write_bytes(pickle.dumps(_Marker(marker)))
    (folder / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"
                                    "    python_model: python_model.pkl\n    artifacts:\n      detector:\n"
                                    "        path: artifacts/detector\n")
    with pytest.raises(ConfigError, match="models-from-code"):
        predict.load_detector(str(folder), None)
    assert not marker.exists()


def test_a_foreign_model_code_file_is_refused(tmp_path):
    marker = tmp_path / "marker"
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "served_model.py").write_text(f"import pathlib; pathlib.Path({str(marker)!r}).touch()\n")
    (folder / "MLmodel").write_text("flavors:\n  python_function:\n"
                                    "    loader_module: mlflow.pyfunc.loaders.code_model\n"
                                    "    model_code_path: /x/served_model.py\n")
    with pytest.raises(ConfigError, match="code file"):
        predict.load_detector(str(folder), None)
    assert not marker.exists()


def test_served_paths_are_off_without_allowed_roots(tmp_path):
    video = tmp_path / "a.mp4"
    video.write_bytes(MP4_HEAD + b"\0" * 400)
    row = check_served_path(str(video), None)
    assert row["status"] == "not_allowed" and ALLOWED_ROOTS_ENV in row["message"]
    assert "path requests are OFF" in package.serving_banner(None, package.Limits())


def test_refused_and_missing_paths_look_the_same(tmp_path):
    inside = tmp_path / "in"
    inside.mkdir()
    (inside / "a.mp4").write_bytes(MP4_HEAD + b"\0" * 400)
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    (inside / "link.mp4").symlink_to(secret)
    roots = [inside.resolve()]
    rows = [check_served_path(p, roots) for p in (str(secret), str(tmp_path / "gone.txt"), str(inside / "gone.mp4"),
                                                  str(inside / "link.mp4"), str(inside / ".." / "secret.txt"),
                                                  "in/a.mp4", "a\x00b.mp4", "/" + "x" * 5000)]
    assert {r["status"] for r in rows} == {"not_allowed"}
    assert len({r["message"].split(": ", 1)[-1] for r in rows}) == 1  # one message, the client's path aside
    assert check_served_path(str(inside / "a.mp4"), roots)["status"] is None


def test_a_bad_served_row_is_its_own_row_and_no_server_path_is_shown(tmp_path):
    frame = pd.DataFrame({"path": ["a\x00.mp4", "", "/" + "y" * 5000], "video": ["", "aGVsbG8=", ""]})
    rows, show = request_rows(frame, tmp_path, [tmp_path])
    assert list(rows["status"]) == ["not_allowed", "not_a_video", "not_allowed"]
    assert str(tmp_path) not in " ".join(rows["message"]) and show[1] == ""
    assert all(len(m) < 1000 for m in rows["message"])


class _SlowDetector:
    """Scores every row as the prior; a decoded video takes `seconds` (what the deadline bounds)."""

    def __init__(self, seconds: float = 0.0):
        self.seconds, self.decoded = seconds, 0

    def score(self, rows, threshold=0.5, *args, **kwargs):
        todo = rows["status"].isna()
        self.decoded += int(todo.sum())
        time.sleep(self.seconds * int(todo.sum()))
        out = rows.assign(p_fake=0.8, label="", n_faces=0, n_frames=0)
        out.loc[todo, "status"] = "ok"
        out.loc[todo, "label"] = "FAKE"
        return out


def _pending(n: int) -> pd.DataFrame:
    return pd.DataFrame({"filename": [f"v{i}.mp4" for i in range(n)], "path": [f"/v{i}.mp4" for i in range(n)],
                         "status": [None] * n, "message": [""] * n}, columns=INPUT_COLUMNS)


def test_the_deadline_stops_work_between_videos():
    det = _SlowDetector(seconds=0.05)
    out = package.score_until(det, _pending(6), 0.5, max_videos=10, deadline=time.monotonic() + 0.12)
    assert det.decoded < 6 and "timed_out" in set(out["status"])
    assert (out.loc[out["status"] == "timed_out", "label"] == "").all() and len(out) == 6


def test_videos_beyond_the_limit_are_not_read():
    det = _SlowDetector()
    out = package.score_until(det, _pending(5), 0.5, max_videos=2, deadline=time.monotonic() + 60)
    assert det.decoded == 2 and list(out["status"]) == ["ok", "ok"] + ["over_limit"] * 3


def test_request_limits_answer_400(monkeypatch):
    monkeypatch.setenv("FAKESTACK_MAX_ROWS", "2")
    monkeypatch.setenv("FAKESTACK_MAX_REQUEST_BYTES", "100")
    model = package.DetectorModel()
    model.limits = package.Limits.from_env()
    with pytest.raises(MlflowException, match="FAKESTACK_MAX_ROWS"):
        model._check_limits(pd.DataFrame({"path": ["/a", "/b", "/c"]}))
    with pytest.raises(MlflowException, match="FAKESTACK_MAX_REQUEST_BYTES"):
        model._check_limits(pd.DataFrame({"video": ["A" * 101]}))
    monkeypatch.setenv("FAKESTACK_MAX_ROWS", "-1")
    with pytest.raises(ConfigError):
        package.Limits.from_env()


def test_the_deadline_follows_the_server_timeout(monkeypatch):
    monkeypatch.setenv(package.SERVER_TIMEOUT_ENV, "300")
    monkeypatch.delenv("FAKESTACK_DEADLINE_S", raising=False)
    assert package.Limits.from_env().deadline_s == 300 - package.DEADLINE_MARGIN_S


def test_every_local_input_is_a_row(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "dir.mp4").mkdir()
    scan = tmp_path / "scan"
    scan.mkdir()
    (scan / "dangling.mp4").symlink_to(tmp_path / "nowhere.mp4")
    (scan / "loop.mp4").symlink_to(scan / "loop.mp4")
    rows = collect_paths([str(tmp_path / "empty"), str(tmp_path / "dir.mp4"), "bad\x00name.mp4", "x" * 5000 + ".mp4",
                          str(scan)])
    assert len(rows) == 6 and rows["status"].notna().all()
    assert list(rows["status"][:4]) == ["not_a_video", "not_a_video", "unreadable", "unreadable"] or \
        set(rows["status"][:4]) <= {"not_a_video", "unreadable", "missing_file"}


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
def test_an_absent_device_is_one_error_before_any_work(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="not available"):
        check_device("cuda")
    with pytest.raises(ConfigError):
        check_device("tpu:0")
    check_device("cpu")
    monkeypatch.setenv(package.DEVICE_ENV, "cuda")
    monkeypatch.setattr(package, "verify", lambda root, expected: "")
    monkeypatch.setattr(package, "load_detector_folder", lambda *a: pytest.fail("loaded before the device check"))
    ctx = SimpleNamespace(artifacts={package.ARTIFACT_KEY: str(tmp_path / "artifacts" / "detector")})
    with pytest.raises(ConfigError, match="not available"):
        package.DetectorModel().load_context(ctx)


def test_stale_uploads_are_removed_and_live_ones_kept(tmp_path):
    dead = tmp_path / f"{UPLOAD_PREFIX}999999999-abc"
    live = tmp_path / f"{UPLOAD_PREFIX}{os.getpid()}-abc"
    for d in (dead, live):
        d.mkdir()
        (d / "upload_00000.mp4").write_bytes(b"x")
    assert package.remove_stale_uploads(tmp_path) == 1
    assert not dead.exists() and live.exists()


def test_out_is_locked_while_a_run_writes_it(tmp_path):
    out = tmp_path / "p.csv"
    with predict.out_lock(out):
        with pytest.raises(ConfigError, match="another predict.py"):
            with predict.out_lock(out):
                pass
    with predict.out_lock(out):  # released
        pass


@pytest.mark.parametrize("value", [2.0, -1.0, float("nan"), float("inf")])
def test_thresholds_outside_0_1_are_refused(value):
    with pytest.raises(ConfigError):
        predict.check_threshold(value)
    with pytest.raises(SystemExit) as err:
        predict.parse_args(["x.mp4", "--threshold", str(value)])
    assert err.value.code == 2
