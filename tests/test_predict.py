"""Scoring new videos: the packaged detector reproduces the submission, through MLflow (in this
process, in a subprocess outside the repo, over HTTP), every bad input gets its status, and
`predict.py` resumes.

One tiny corpus, oof run and stack run are shared by the module (they dominate the cost).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import mlflow
from features.synth import SynthConfig, generate_corpus
from meta.metrics import log_loss
from pipelines import oof, predict, stack
from pipelines.config import build_config
from pipelines.scoring.inputs import ALLOWED_ROOTS_ENV

REGISTRY_NAME = "fakestack-test"
OOF_SET = ["folds.k=2", "select=[meso4, mesoinception4]", "learners.meso4.input_size=32",
           "learners.mesoinception4.input_size=32", "faces.n_frames=4", "faces.crop_size=48",
           "faces.workers=1", "train.epochs=2", "train.batch_size=16", "unit_workers=1", "refit=true",
           "progress=false"]
STACK_SET = ["sweep.metas=[logreg]", "sweep.calibrations=[none, platt]", "sweep.leave_one_out=false",
             "n_jobs=1", "plots=false", "inner_k=2", f"registry_name={REGISTRY_NAME}"]
SERVE_START_S = 180  # generous: the server imports torch and loads the model before it answers
ATOL = 1e-6


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(corpus root, stack result, tracking uri, submission, refit stack result) of one tiny oof run
    (with refit models) and two stack runs on it: fold models and refit models at test time."""
    tmp = tmp_path_factory.mktemp("predict")
    root = tmp / "corpus"
    generate_corpus(root, SynthConfig.tiny(n_originals=6), progress=False)
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        ocfg = build_config(oof.OOFConfig, "oof", "demo", OOF_SET)
        ocfg = oof.dataclasses.replace(ocfg, data=[str(root)], workdir=str(tmp / "work"), tracking_uri=uri)
        oof_run = oof.run(ocfg, profile="test")
        scfg = build_config(stack.StackConfig, "stack", "demo", STACK_SET)
        scfg = stack.replace(scfg, oof_run_id=oof_run.run_id, tracking_uri=uri, output_dir=str(tmp / "stack"))
        result = stack.run(scfg, progress=False)
    submission = pd.read_csv(tmp / "stack" / "submission.csv")
    with pytest.MonkeyPatch.context() as mp:  # the same ensemble with refit level-0 models, not registered
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        refit = stack.run(stack.replace(scfg, test_time="refit", registry_name="",
                                        output_dir=str(tmp / "stack-refit")), progress=False)
    return root, result, uri, submission, refit


def _test_paths(root: Path, submission: pd.DataFrame) -> list[str]:
    meta = json.loads((root / "metadata.json").read_text())
    assert set(submission["filename"]) <= set(meta)
    return [str(root / name) for name in submission["filename"]]


def _judged_paths(root: Path, result) -> list[str]:
    """Test videos the ensemble scored from faces (not given the prior)."""
    d = result.diagnostics
    return [str(root / v) for v in d.loc[(d["status"] == "ok") & ~d["imputed"], "video_id"]]


def _by_filename(table: pd.DataFrame) -> pd.Series:
    return table.set_index("filename")["p_fake"]


def test_stack_packages_and_registers_the_detector(trained):
    _, result, uri, _, _ = trained
    assert result.detector_uri and result.detector_version == "1", result.detector_note
    mlflow.set_tracking_uri(uri)
    version = mlflow.MlflowClient().get_model_version(REGISTRY_NAME, "1")
    assert float(version.tags["cv_log_loss"]) == pytest.approx(result.best.metrics["cv_log_loss"], abs=1e-6)
    assert "test_log_loss" in version.tags


def test_packaged_detector_reproduces_the_submission(trained, monkeypatch):
    root, result, uri, submission, _ = trained
    mlflow.set_tracking_uri(uri)
    monkeypatch.setenv(ALLOWED_ROOTS_ENV, str(root))  # path requests read nothing without it
    model = mlflow.pyfunc.load_model(f"models:/{REGISTRY_NAME}/1")
    out = model.predict(pd.DataFrame({"path": _test_paths(root, submission)}))
    assert list(out["filename"]) == list(submission["filename"])
    np.testing.assert_allclose(out["p_fake"].to_numpy(), submission["label"].to_numpy(), rtol=0, atol=ATOL)
    assert set(out["status"]) <= {"ok", "no_face"}
    assert [c for c in out.columns if c.startswith("score_")] == [
        f"score_{name}" for name in result.best.ensemble.meta_.learners_]
    want = np.where(out["status"] == "ok", np.where(out["p_fake"] > 0.5, "FAKE", "REAL"), "")
    assert (out["label"] == want).all()


def test_a_detector_without_audio_never_decodes_a_soundtrack(trained, monkeypatch):
    """Packaged from a run without the soundtrack learner: detector.json and the output columns as
    before audio existed, the submission reproduced, and no soundtrack decoded."""
    import features.audio
    from pipelines.scoring import detector
    from pipelines.scoring.detector import OUTPUT_COLUMNS, spec_to_dict

    def boom(*args, **kwargs):
        raise AssertionError("a detector without audio decoded a soundtrack")

    monkeypatch.setattr(features.audio, "decode_audio", boom)
    monkeypatch.setattr(detector, "predict_unseen", boom)
    root, result, uri, submission, _ = trained
    mlflow.set_tracking_uri(uri)
    monkeypatch.setenv(ALLOWED_ROOTS_ENV, str(root))
    model = mlflow.pyfunc.load_model(f"models:/{REGISTRY_NAME}/1")
    spec = model.unwrap_python_model().detector.spec
    assert spec.audio is None and "audio" not in spec_to_dict(spec)
    out = model.predict(pd.DataFrame({"path": _test_paths(root, submission)}))
    np.testing.assert_allclose(out["p_fake"].to_numpy(), submission["label"].to_numpy(), rtol=0, atol=ATOL)
    assert list(out.columns) == OUTPUT_COLUMNS + [f"score_{name}" for name in spec.learners]


def test_refit_detector_scores_the_test_split_as_stack_reported(trained, monkeypatch):
    root, _, uri, submission, refit = trained
    assert refit.detector_uri and refit.detector_version is None, refit.detector_note
    mlflow.set_tracking_uri(uri)
    monkeypatch.setenv(ALLOWED_ROOTS_ENV, str(root))
    model = mlflow.pyfunc.load_model(refit.detector_uri)
    spec = model.unwrap_python_model().detector.spec
    assert spec.test_time == "refit" and all(ls.folds == [-1] for ls in spec.learners.values())
    out = model.predict(pd.DataFrame({"path": _test_paths(root, submission)}))
    labels = pd.read_csv(root / "test_labels.csv").set_index("filename")["label"]
    y = out["filename"].map(labels).to_numpy(dtype=float)
    assert log_loss(y, out["p_fake"].to_numpy()) == pytest.approx(refit.refit_test_scores["refit_test_log_loss"],
                                                                   abs=ATOL)
    assert not np.allclose(out["p_fake"].to_numpy(), submission["label"].to_numpy())  # other models


def _bad_inputs(folder: Path, good: str) -> list[tuple[str, str]]:
    """(status it must get, path): one good video and one file per bad kind."""
    folder.mkdir()
    (folder / "notes.txt").write_text("not a video")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    blank = folder / "blank.mp4"
    writer = cv2.VideoWriter(str(blank), cv2.VideoWriter_fourcc(*"mp4v"), 15, (160, 120))
    for _ in range(15):
        writer.write(np.full((120, 160, 3), 90, np.uint8))
    writer.release()
    return [("ok", good), ("not_a_video", str(folder / "notes.txt")), ("not_a_video", str(folder / "empty.mp4")),
            ("decode_error", str(folder / "broken.mp4")), ("no_face", str(blank)),
            ("missing_file", str(folder / "gone.mp4"))]


def test_every_bad_input_gets_its_status_and_the_rest_is_scored(trained, tmp_path):
    root, result, uri, submission, _ = trained
    good = _judged_paths(root, result)[0]
    kinds = _bad_inputs(tmp_path / "bad", good)
    out = tmp_path / "pred.csv"
    res = predict.main([p for _, p in kinds] + ["--model", result.detector_uri, "--tracking-uri", uri,
                                               "--out", str(out), "--set", "progress=false",
                                               "--set", f"cache_dir={tmp_path / 'faces'}"])
    table = res.table.set_index("path")
    prior = result.best.ensemble.prior_
    for status, path in kinds:
        key = path if status in ("missing_file", "not_a_video") else str(Path(path).resolve())
        row = table.loc[key]
        assert row["status"] == status, (path, row["message"])
        if status != "ok":
            assert row["p_fake"] == pytest.approx(prior) and "prior" in row["message"]
    want = submission.set_index("filename")["label"][Path(good).name]
    assert table.loc[str(Path(good).resolve()), "p_fake"] == pytest.approx(want, abs=ATOL)
    written = pd.read_csv(out)
    assert len(written) == len(kinds) and out.with_suffix(".parquet").is_file()


def test_rerun_skips_scored_videos(trained, tmp_path, monkeypatch):
    root, result, uri, submission, _ = trained
    paths = _test_paths(root, submission)[:3]
    argv = ["--model", result.detector_uri, "--tracking-uri", uri, "--out", str(tmp_path / "p.csv"),
            "--set", f"cache_dir={tmp_path / 'faces'}",
            "--set", "progress=false", "--set", "batch_videos=2"]
    first = predict.main(paths[:2] + argv)
    calls = []
    real = predict.Detector.score
    monkeypatch.setattr(predict.Detector, "score", lambda self, rows, *a, **k: calls.append(len(rows))
                        or real(self, rows, *a, **k))
    second = predict.main(paths + argv)
    assert second.n_skipped == 2 and calls == [1]
    pd.testing.assert_series_equal(_by_filename(second.table).iloc[:2], _by_filename(first.table))


def test_user_mistakes_exit_2_with_one_message(trained, tmp_path, capsys):
    root, result, uri, _, _ = trained
    (tmp_path / "empty").mkdir()
    base = ["--tracking-uri", uri, "--out", str(tmp_path / "p.csv"), "--set", f"cache_dir={tmp_path / 'faces'}"]
    for argv in ([str(root), "--model", "models:/no-such-model/7"],  # a model that is not there
                 [str(root), "--set", "thresold=0.3"],  # a misspelt setting
                 [str(root), "--model", result.detector_uri, "--out", str(tmp_path / "p.parquet")],
                 [str(root), "--model", result.detector_uri, "--threshold", "2"],
                 [str(root), "--model", result.detector_uri, "--threshold", "nan"],
                 [str(root), "--model", result.detector_uri, "--set", "device=cuda:7"]):
        with pytest.raises(SystemExit) as err:
            predict.main(base + argv)  # argv last: its --out wins
        assert err.value.code == 2
        assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_registered_model_predicts_in_a_fresh_process_outside_the_repo(trained, tmp_path):
    root, _, uri, submission, _ = trained
    paths = _test_paths(root, submission)[:2]
    code = ("import json, sys, mlflow, pandas as pd\n"
            f"m = mlflow.pyfunc.load_model('models:/{REGISTRY_NAME}/1')\n"
            "out = m.predict(pd.DataFrame({'path': json.loads(sys.argv[1])}))\n"
            "print(out[['filename', 'p_fake']].to_json(orient='records'))\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, ALLOWED_ROOTS_ENV: str(root),
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(paths)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = pd.DataFrame(json.loads(done.stdout.strip().splitlines()[-1])).set_index("filename")["p_fake"]
    want = submission.set_index("filename")["label"][got.index]
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), atol=ATOL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, payload: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture()
def server(trained, tmp_path):
    root, _, uri, _, _ = trained
    port = _free_port()
    # the server runs `uvicorn` by name: the venv's bin folder must be on PATH, as when activated
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, ALLOWED_ROOTS_ENV: str(root), "PATH": path}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{REGISTRY_NAME}/1",
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + SERVE_START_S
    try:
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the model server did not come up"
                time.sleep(1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_served_model_answers_http_and_survives_bad_requests(trained, server, tmp_path):
    root, result, _, submission, _ = trained
    good = _judged_paths(root, result)[0]
    encoded = base64.b64encode(Path(good).read_bytes()).decode()
    want = submission.set_index("filename")["label"][Path(good).name]
    status, body = _post(server, {"dataframe_split": {"columns": ["video", "filename"],
                                                      "data": [[encoded, Path(good).name]]}})
    assert status == 200, body
    row = body["predictions"][0]
    assert row["status"] == "ok" and row["p_fake"] == pytest.approx(want, abs=ATOL) and row["path"] == ""
    status, body = _post(server, {"dataframe_records": [{"nothing": 1}]})
    assert 400 <= status < 500 and "path" in json.dumps(body)
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(Path(good).read_bytes())
    status, body = _post(server, {"dataframe_records": [{"path": str(outside)}, {"path": good},
                                                        {"video": base64.b64encode(b"hello").decode()}]})
    assert status == 200, body
    assert [r["status"] for r in body["predictions"]] == ["not_allowed", "ok", "not_a_video"]
    assert body["predictions"][1]["p_fake"] == pytest.approx(want, abs=ATOL)


def _local_copy(uri: str, tracking: str, dest: Path) -> Path:
    mlflow.set_tracking_uri(tracking)
    return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(dest)))


def test_the_detector_is_data_and_refuses_tampering(trained, tmp_path, monkeypatch, capsys):
    from pipelines.scoring import package
    from pipelines.scoring.integrity import DIGEST_TAG, model_digest

    _, result, uri, _, _ = trained
    folder = _local_copy(f"models:/{REGISTRY_NAME}/1", uri, tmp_path / "m")
    assert not list(folder.rglob("*.pkl")) and (folder / "served_model.py").is_file()
    version = mlflow.MlflowClient().get_model_version(REGISTRY_NAME, "1")
    assert version.tags[DIGEST_TAG] == model_digest(folder)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    predict.load_detector(f"models:/{REGISTRY_NAME}/1", None)  # loads with MLflow's pickle guard on
    spec = folder / "artifacts" / "detector" / "detector.json"
    doc = json.loads(spec.read_text())
    name = next(iter(doc["learners"]))
    doc["learners"][name]["learner_config"]["weights_path"] = "/etc/passwd"
    spec.write_text(json.dumps(doc))
    with pytest.raises(predict.ConfigError, match="differ from what packaging recorded"):
        predict.load_detector(str(folder), None)  # the run its MLmodel names recorded the digest
    with pytest.raises(predict.ConfigError, match="weights"):
        package.load_detector_folder(folder / "artifacts" / "detector", None)
    broken = _local_copy(f"models:/{REGISTRY_NAME}/1", uri, tmp_path / "b")
    ckpt = next((broken / "artifacts" / "detector" / "units").rglob("model.pt"))
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(predict.ConfigError, match="damaged"):
        package.load_detector_folder(broken / "artifacts" / "detector", None)
    with pytest.raises(SystemExit) as err:
        predict.main([str(tmp_path), "--model", str(broken), "--tracking-uri", uri, "--out", str(tmp_path / "p.csv")])
    assert err.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_inputs_that_cannot_be_judged_are_rows_without_a_label(trained, tmp_path):
    root, result, uri, _, _ = trained
    good = _judged_paths(root, result)[0]
    (tmp_path / "x.mp4").mkdir()  # a folder named like a video
    (tmp_path / "novideos").mkdir()
    res = predict.main([good, str(tmp_path / "x.mp4"), str(tmp_path / "novideos"), "--model", result.detector_uri,
                        "--tracking-uri", uri, "--out", str(tmp_path / "p.csv"), "--set", "progress=false",
                        "--set", f"cache_dir={tmp_path / 'faces'}"])
    t = res.table
    assert len(t) == 3 and list(t["status"]) == ["ok", "not_a_video", "not_a_video"]
    assert list(t["label"][1:]) == ["", ""] and t["label"][0] in ("FAKE", "REAL")
    assert np.allclose(t["p_fake"][1:], result.best.ensemble.prior_) and all("prior" in m for m in t["message"][1:])


def test_resume_rescores_a_replaced_file_and_relabels_at_the_new_threshold(trained, tmp_path, monkeypatch):
    import shutil

    root, result, uri, _, _ = trained
    a, b = _judged_paths(root, result)[:2]
    here = tmp_path / "v"
    here.mkdir()
    shutil.copy(a, here / "clip.mp4")
    argv = [str(here / "clip.mp4"), "--model", result.detector_uri, "--tracking-uri", uri, "--out",
            str(tmp_path / "p.csv"), "--set", f"cache_dir={tmp_path / 'faces'}", "--set", "progress=false"]
    first = predict.main(argv)
    shutil.copy(b, here / "clip.mp4")  # another video at the same path
    os.utime(here / "clip.mp4", ns=(time.time_ns(), time.time_ns() + 10**9))
    second = predict.main(argv)
    assert second.n_skipped == 0 and second.table["p_fake"][0] != pytest.approx(first.table["p_fake"][0], abs=ATOL)
    calls = []
    monkeypatch.setattr(predict.Detector, "score", lambda *a, **k: calls.append(1))
    p = float(second.table["p_fake"][0])
    relabelled = predict.main(argv + ["--threshold", "1" if p > 0.5 else "0"])
    assert relabelled.n_skipped == 1 and not calls
    assert relabelled.table["label"][0] != second.table["label"][0]
