"""Ray as the engine (features.engines, features.engines.ray_cluster) on a local Ray the test starts: 2 CPUs,
no dashboard. The promises: the face stage and the units give the very tables the local engine
gives; a worker killed in the middle of a unit is retried and changes nothing; a cluster address
nobody listens at ends oof.py at once with one message and exit status 2."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import ray
from unit_data import CROPS_KEY, LEARNERS, TRAIN, make_crops, make_tables, write_cache

from base_learners.oof import run_oof
from features.contract import frames_table
from features.engines import Engine
from features.faces.config import FaceConfig
from features.faces.extract import extract_faces, load_crops
from features.faces.source import CropSource
from pipelines.oof import parse_config

ROOT = Path(__file__).resolve().parents[1]
LOCAL_CPUS = 2
KILL_EPOCHS = 200  # long enough (seconds, on an idle 2-core machine) to find the unit's worker and kill it mid-fit
INTO_THE_TASK_S = 0.3  # past the task's start: the worker is importing, initialising or fitting
FIND_WORKER_S = 120


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    eng = Engine("ray", workdir=tmp_path_factory.mktemp("ray-workdir"), local_cpus=LOCAL_CPUS)
    eng.start()
    yield eng
    ray.shutdown()


def test_face_stage_on_ray_writes_the_local_engines_tables_and_crops(engine, synth_faces, tmp_path):
    corpus, videos, local, _ = synth_faces
    cfg = FaceConfig(n_frames=3, crop_size=64, workers=1, det_prob=0.7)  # as the synth_faces fixture
    on_ray = extract_faces(videos, cfg, tmp_path / "cache", progress=False, engine=engine)
    pd.testing.assert_frame_equal(on_ray.faces, local.faces)
    pd.testing.assert_frame_equal(on_ray.status, local.status)
    for video_id in local.faces["video_id"].unique():
        assert (load_crops(on_ray.crops_dir, video_id) == load_crops(local.crops_dir, video_id)).all()


def test_units_on_ray_match_the_local_engine(engine, tmp_path):
    faces, videos, folds = make_tables()
    frames = frames_table(faces, videos, folds)
    crops = make_crops(frames)
    local = run_oof(frames, crops, LEARNERS, {"meso4": TRAIN}, tmp_path / "local", CROPS_KEY, progress=False)
    on_ray = run_oof(frames, crops, LEARNERS, {"meso4": TRAIN}, tmp_path / "ray", CROPS_KEY, progress=False,
                     engine=engine)
    pd.testing.assert_frame_equal(on_ray.frame_preds, local.frame_preds)
    resumed = run_oof(frames, crops, LEARNERS, {"meso4": TRAIN}, tmp_path / "ray", CROPS_KEY, progress=False)
    assert all(r.cached for r in resumed.units)  # the local engine resumes what Ray wrote


def test_units_read_the_lazy_crop_source_on_ray_and_a_task_error_keeps_its_type(engine, tmp_path):
    """The pipeline's path (a CropSource shipped to the tasks), and a user's error inside a task
    reaching the caller as itself, with its message, not Ray's wrapper and remote traceback."""
    faces, videos, folds = make_tables()
    frames = frames_table(faces, videos, folds)
    crops = make_crops(frames)
    write_cache(tmp_path / "cache", frames, crops)
    source = CropSource.from_table(frames, tmp_path / "cache")
    local = run_oof(frames, crops, LEARNERS, {"meso4": TRAIN}, tmp_path / "local", CROPS_KEY, progress=False)
    on_ray = run_oof(frames, source, LEARNERS, {"meso4": TRAIN}, tmp_path / "ray", CROPS_KEY, progress=False,
                     engine=engine)
    pd.testing.assert_frame_equal(on_ray.frame_preds, local.frame_preds)
    (tmp_path / "cache" / "v00.mp4.npy").unlink()  # the cache loses a file after the source was built
    with pytest.raises(FileNotFoundError) as err:
        run_oof(frames, source, LEARNERS, {"meso4": TRAIN}, tmp_path / "gone", CROPS_KEY, progress=False,
                engine=engine)
    assert "v00.mp4.npy" in str(err.value) and "Traceback" not in str(err.value)


def _ray_workers(title: str) -> list[int]:
    """Pids of processes whose title (Ray sets `ray::<task name>`) starts with `title`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith(title):
                pids.append(int(entry.name))
    return pids


def test_a_worker_killed_mid_unit_is_retried_and_the_tables_match(engine, tmp_path):
    faces, videos, folds = make_tables()
    frames = frames_table(faces, videos, folds)
    crops = make_crops(frames)
    train = {"meso4": dataclasses.replace(TRAIN, epochs=KILL_EPOCHS)}
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = run_oof(frames, crops, LEARNERS, train, tmp_path / "ray", CROPS_KEY,
                                        progress=False, engine=engine)
        except BaseException as err:  # surfaced by the assertion below
            outcome["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    title, killed, deadline = "ray::_train_in_worker meso4/fold0", [], time.monotonic() + FIND_WORKER_S
    while not killed and thread.is_alive() and time.monotonic() < deadline:
        pids = _ray_workers(title)
        if pids:
            time.sleep(INTO_THE_TASK_S)
            for pid in _ray_workers(title):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.05)
    thread.join()
    assert killed, f"no Ray worker titled {title!r} was seen to kill"
    assert "error" not in outcome, outcome.get("error")
    local = run_oof(frames, crops, LEARNERS, train, tmp_path / "local", CROPS_KEY, progress=False)
    pd.testing.assert_frame_equal(outcome["result"].frame_preds, local.frame_preds)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_ray_address_ends_oof_at_once_with_one_message(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "pipelines" / "oof.py"), "--workdir", str(tmp_path),
                           "--set", "engine=ray", "--set", f"ray_address={address}"],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "RAY_ADDRESS": ""})
    assert proc.returncode == 2, proc.stderr
    assert f"oof.py: error: cannot reach a Ray cluster at '{address}'" in proc.stderr
    assert "ray start --head" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - t0 < 60


def test_unknown_engine_lists_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_config(["--set", "engine=spark"])
    assert exit_.value.code == 2 and "unknown engine 'spark'; valid: local, ray" in capsys.readouterr().err
