"""Shared helpers of the level-0 unit tests (not a test module): a small synthetic face table whose
crops carry a learnable signal (fakes get a bright red square), a face cache written from it, and a
run killed in a subprocess while its second unit trains."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from base_learners.registry import LearnerConfig
from base_learners.train import TrainConfig
from features.contract import UNIT_FILES
from features.faces import cache

N_VIDEOS, N_LABELLED, N_FRAMES, SIZE = 24, 20, 3, 32
FAKE_EVERY = 5  # every 5th labelled video is real: the corpus's ~4:1 fake:real
LEARNERS = {"meso4": LearnerConfig("meso4", input_size=SIZE)}
TRAIN = TrainConfig(epochs=1, batch_size=16, device="cpu", num_threads=1)
CROPS_KEY = "test-crops"


def make_tables(k: int = 2):
    """videos/folds/faces tables: pairs of videos share a group; the last 4 videos are test videos."""
    videos, faces = [], []
    for v in range(N_VIDEOS):
        labelled = v < N_LABELLED
        videos.append(dict(video_id=f"v{v:02d}.mp4", label=int(v % FAKE_EVERY != 0) if labelled else pd.NA,
                           group=v // 2, fold=(v // 2) % k if labelled else pd.NA))
        faces += [dict(video_id=f"v{v:02d}.mp4", frame_idx=3 * f, face_idx=0, crop_idx=f) for f in range(N_FRAMES)]
    videos = pd.DataFrame(videos).astype({"label": "Int8", "fold": "Int64"})
    return pd.DataFrame(faces), videos.drop(columns="fold"), videos[["video_id", "fold"]]


def make_crops(frames: pd.DataFrame) -> np.ndarray:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (len(frames), SIZE, SIZE, 3), dtype=np.uint8)
    fake = frames["label"].fillna(0).to_numpy(int) == 1
    crops[fake, SIZE // 4: 3 * SIZE // 4, SIZE // 4: 3 * SIZE // 4, 0] = 255
    return crops


def write_cache(crops_dir, frames: pd.DataFrame, crops: np.ndarray, fmt: str = "npy") -> None:
    """A face cache holding `crops` (aligned to `frames` rows), each video's rows in crop_idx order."""
    crops_dir.mkdir(parents=True, exist_ok=True)
    cache.write_config(crops_dir, {"crop_format": fmt, "crop_size": SIZE})
    for video_id, rows in frames.groupby("video_id", sort=False).indices.items():
        order = rows[np.argsort(frames["crop_idx"].to_numpy()[rows])]
        faces = frames.loc[order, ["video_id", "frame_idx", "face_idx", "crop_idx"]]
        status = {"video_id": video_id, "status": "ok", "source": None}
        cache.write_result(crops_dir, fmt, faces, crops[order], status)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from contextlib import contextmanager
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from {module} import run_units

    units_dir = Path(sys.argv[1])
    started = []

    class Hooks:
        def on_epoch(self, epoch, metrics):
            if len(started) > 1:  # the second unit has trained an epoch: mark it, then stall
                (units_dir / "second-unit-training").touch()
                time.sleep(600)
        def on_done(self, result):
            pass

    @contextmanager
    def scope(unit):
        started.append(unit)
        yield Hooks()

    run_units(units_dir, scope)
""")
POLL_S, KILL_WAIT_S = 0.2, 240


def kill_during_second_unit(module: str, units_dir: Path, tmp_path: Path) -> list[str]:
    """Run `module.run_units` in a subprocess, SIGKILL it while its second unit trains, and return
    the unit folders that finished (a resumed run must then redo only the rest)."""
    units_dir.mkdir()
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).parent), module=module))
    proc = subprocess.Popen([sys.executable, str(script), str(units_dir)])
    try:
        deadline = time.monotonic() + KILL_WAIT_S
        while not (units_dir / "second-unit-training").exists():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the second unit never started"
            time.sleep(POLL_S)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    return sorted(p.parent.name for p in units_dir.rglob(UNIT_FILES[-1]))
