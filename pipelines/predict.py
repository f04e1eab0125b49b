"""Score new videos: `python pipelines/predict.py PATH [PATH ...]` with the packaged detector.

PATH: video files and/or folders (searched recursively for video extensions). The model is the
detector that `stack.py` logged and registered: `--model` takes `runs:/RUN/detector`,
`models:/fakestack/3`, `models:/fakestack@alias` or a local model folder; by default the newest
stack sweep run's detector. One row per input video (filename, path, p_fake, label at the
threshold, status, message, faces used, each learner's video score) is printed and written to
`--out` (CSV, and parquet beside it). A video that cannot be judged gets the training prior and a
status saying why, and no label. Every input is a row: a file that cannot be read, a folder
without videos, a dangling link get their status and the others are scored; exit status 2 is kept
for mistakes in the command itself (flags, settings, the model, `--out`). Resumable: a rerun with
the same model and `--out` skips videos already scored whose file is unchanged (same path, size and
modification time), relabelling them at the current threshold (face extraction is cached too), so
a large folder can be stopped and continued; videos that could not be read are tried again. The
face cache is keyed by each file's path, size and modification time, and `--set
cache_max_bytes=N` bounds it (least recently used videos removed after each batch). `--out`
holds the videos of the latest call, and one run at a time may write it (a lock file beside it).

The model loads without unpickling anything, and only after its files match the sha256 recorded
when it was packaged (pipelines.scoring.integrity says what is checked for each kind of URI).

`--explain DIR` also writes one self-contained HTML report per video into DIR (pipelines.explain:
verdict, sampled frames and faces, each learner's probabilities over time and heat maps, the
learners' contributions); a video without a face gets a report that says so. With it, a video is
only skipped on resume when its report is already there.

    python pipelines/predict.py VIDEO_OR_FOLDER ... [--model URI] [--out predictions.csv]
                                [--threshold 0.5] [--explain DIR] [--set workers=0 --set device=cpu ...]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from tqdm.auto import tqdm

import mlflow
from features.common import ConfigError, atomic_write_parquet, atomic_write_text, runtime_field
from pipelines.config import WORK_DIR, add_config_args, build_config, exit_on_user_error, setup_logging
from pipelines.explain.case import ExplainConfig
from pipelines.explain.report import report_name
from pipelines.explain.sources import write_detector_reports
from pipelines.scoring import face_cache
from pipelines.scoring.detector import AUDIO_STATUS_COLUMN, DEFAULT_THRESHOLD, NO_LABEL, Detector, check_device
from pipelines.scoring.inputs import PRECHECK_STATUSES, collect_paths
from pipelines.scoring.integrity import recorded_digest, verify
from pipelines.scoring.package import DETECTOR_NAME
from pipelines.stacking.runs import DETECTOR_TAG, KIND_TAG
from pipelines.tracking import MLFLOW_DIR, STACK_EXPERIMENT, setup_tracking

log = logging.getLogger(__name__)

PIPELINE = "predict"
MODEL_COLUMN = "model"  # the model URI each row was scored with
MODEL_ID_COLUMN = "model_uuid"  # the loaded model's own id: what resume compares (an alias may move)
# rows a rerun tries again: the file may have appeared, or finished copying
RETRY_STATUSES = PRECHECK_STATUSES + ("decode_error",)
SIZE_COLUMN, MTIME_COLUMN = "file_size", "file_mtime_ns"  # what resume compares besides the path
PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"  # held at false while the model loads
LATEST_SCAN = 50  # recent stack runs searched for the newest one with a packaged detector
PRINT_COLUMNS = ["filename", "p_fake", "label", "status", "n_faces"]
MODEL_ERRORS = (OSError, MlflowException)  # a model URI that is not there or not readable


@dataclass
class PredictConfig:
    """The scoring stage's settings; profiles (predict.yaml) and --set override these defaults."""

    model: str | None = None  # None: the newest stack sweep run's detector
    model_sha256: str | None = None  # a local model folder's expected digest (URIs: the recorded one)
    out: str | None = runtime_field(None)  # None: WORK_DIR/predict/predictions.csv
    threshold: float = DEFAULT_THRESHOLD  # P(FAKE) above it is labelled FAKE
    workers: int = runtime_field(1)  # face-stage processes (0: one per core); results do not depend on it
    device: str | None = None  # None: as trained (CPU where that device is absent)
    cache_dir: str | None = runtime_field(None)  # face cache; None: WORK_DIR/predict/faces
    # bound on the face cache's bytes (None: unbounded): the least recently used videos are removed
    # after each batch (pipelines.scoring.face_cache); it changes no result, only what is re-extracted
    cache_max_bytes: int | None = runtime_field(None)
    batch_videos: int = 8  # videos per step: the output is written (and resumable) after each
    tracking_uri: str | None = runtime_field(None)  # None: MLFLOW_TRACKING_URI or the local sqlite store
    progress: bool = runtime_field(True)
    explain_dir: str | None = None  # --explain DIR: one HTML report per video there (None: none)
    explain: ExplainConfig = field(default_factory=ExplainConfig)

    def __post_init__(self) -> None:
        if self.cache_max_bytes is not None and self.cache_max_bytes < 0:
            raise ConfigError(f"cache_max_bytes {self.cache_max_bytes} is negative (None: unbounded)")


@dataclass
class PredictResult:
    table: pd.DataFrame
    out: Path
    model_uri: str
    timings: dict[str, float]
    n_skipped: int
    reports: list[Path] = field(default_factory=list)  # the HTML reports written by this call
    face_settings: str = ""  # the face settings the detector crops videos with (Detector.describe_faces)


def latest_detector_uri() -> str:
    """The packaged detector of the newest finished stack sweep run that has one."""
    exp = mlflow.get_experiment_by_name(STACK_EXPERIMENT)
    found = [] if exp is None else MlflowClient().search_runs(
        [exp.experiment_id], f"tags.`{KIND_TAG}` = 'sweep' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=LATEST_SCAN)
    with_detector = [r for r in found if r.data.tags.get(DETECTOR_TAG)]
    if not with_detector:
        raise FileNotFoundError(f"no finished stack.py run with a packaged detector in {mlflow.get_tracking_uri()}: "
                                "run pipelines/oof.py and pipelines/stack.py first, or pass --model URI")
    return f"runs:/{with_detector[0].info.run_id}/{DETECTOR_NAME}"


def load_detector(uri: str, device: str | None, expected: str | None = None) -> tuple[Detector, str]:
    """The packaged detector, loaded through MLflow as any client would, and the model's own id.

    The model's files are fetched into a private folder (a local folder is used in place), checked
    (pipelines.scoring.integrity: the structure, and the sha256 recorded at packaging) and only
    then loaded, with MLflow's pickle guard on, so a tampered model is refused before any of it
    runs. `expected` is a local folder's digest when no run records one."""
    check_device(device)
    with tempfile.TemporaryDirectory(prefix="fakestack-model-") as tmp:
        local = Path(uri).expanduser()
        if not local.is_dir():
            local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))
        recorded = recorded_digest(uri, local)
        if recorded is None and expected is None and not Path(uri).expanduser().is_dir():
            raise ConfigError(f"{uri}: no sha256 recorded for this model (packaged before fakestack recorded "
                              "one); repackage it with pipelines/stack.py")
        if recorded is None and expected is None:
            log.warning("%s: no recorded sha256 for this folder (give --set model_sha256=HEX): only its "
                        "structure is checked", uri)
        verify(local, recorded or expected)
        with _pickle_off():
            loaded = mlflow.pyfunc.load_model(str(local))
    detector = getattr(loaded.unwrap_python_model(), "detector", None)
    if detector is None:
        raise ConfigError(f"{uri}: not a fakestack detector model (no detector was loaded)")
    detector.device = device or detector.device
    log.info("%s: videos are cropped with %s", uri, detector.spec.describe_faces())
    return detector, str(loaded.metadata.model_uuid)


@contextlib.contextmanager
def _pickle_off():
    """MLflow's own guard against unpickling a python model, on while the detector loads."""
    before = os.environ.get(PICKLE_ENV)
    os.environ[PICKLE_ENV] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PICKLE_ENV, None)
        else:
            os.environ[PICKLE_ENV] = before


@contextlib.contextmanager
def out_lock(out: Path):
    """One predict.py run per --out at a time (an flock on `<out>.lock`): two runs writing one output
    would each say "written" while one run's rows are lost."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(out.suffix + ".lock"), "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"--out {out}: another predict.py run is writing it; wait for it or choose "
                              "another --out") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def file_stamps(rows: pd.DataFrame) -> pd.DataFrame:
    """Each readable row's file size and modification time (NA where the file cannot be stat'ed)."""
    sizes, mtimes = [], []
    for path, status in zip(rows["path"], rows["status"]):
        try:
            st = os.stat(path) if pd.isna(status) else None
        except (OSError, ValueError):
            st = None
        sizes.append(st.st_size if st else pd.NA)
        mtimes.append(st.st_mtime_ns if st else pd.NA)
    return rows.assign(**{SIZE_COLUMN: pd.array(sizes, dtype="Int64"),
                          MTIME_COLUMN: pd.array(mtimes, dtype="Int64")})


def relabel(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Labels from the stored p_fake at `threshold` (a rerun with another threshold relabels)."""
    if table.empty:
        return table
    label = np.where(table["p_fake"] > threshold, "FAKE", "REAL")
    return table.assign(label=np.where(table["status"] == "ok", label, NO_LABEL))


def check_out(out: Path) -> None:
    """--out names the CSV (its parquet twin goes beside it); never overwrite someone else's file."""
    if out.suffix.lower() == ".parquet":
        raise ConfigError(f"--out {out}: name the CSV (e.g. {out.with_suffix('.csv')}); the parquet is written beside it")
    if out.exists() and not out.with_suffix(".parquet").is_file():
        raise ConfigError(f"--out {out}: exists and is no predict.py output (no parquet beside it); choose another")


def previous_rows(out: Path, model_id: str) -> pd.DataFrame:
    """Rows of an earlier run of the same model into the same output, to skip (see RETRY_STATUSES)."""
    parquet = out.with_suffix(".parquet")
    if not parquet.is_file():
        return pd.DataFrame()
    old = pd.read_parquet(parquet)
    if MODEL_ID_COLUMN not in old.columns or "path" not in old.columns:
        raise ConfigError(f"{parquet}: not a predict.py output (no {MODEL_ID_COLUMN}/path columns); "
                          "choose another --out")
    keep = (old[MODEL_ID_COLUMN] == model_id) & ~old["status"].isin(RETRY_STATUSES)
    if SIZE_COLUMN not in old.columns or MTIME_COLUMN not in old.columns:
        return old.iloc[:0]  # written before resume compared files: score again
    return old[keep]


def run(paths: list[str], cfg: PredictConfig) -> PredictResult:
    """Score every video under `paths`; see the module docstring."""
    check_threshold(cfg.threshold)
    setup_tracking(STACK_EXPERIMENT, cfg.tracking_uri, MLFLOW_DIR)
    rows = collect_paths(paths).drop_duplicates("path", ignore_index=True)
    uri = cfg.model or latest_detector_uri()
    out = Path(cfg.out) if cfg.out else WORK_DIR / PIPELINE / "predictions.csv"
    check_out(out)
    with out_lock(out):
        return _run(rows, uri, out, cfg)


def _run(rows: pd.DataFrame, uri: str, out: Path, cfg: PredictConfig) -> PredictResult:
    cache = Path(cfg.cache_dir) if cfg.cache_dir else WORK_DIR / PIPELINE / "faces"
    t0 = time.perf_counter()
    detector, model_id = load_detector(uri, cfg.device, cfg.model_sha256)
    timings = {"load_s": time.perf_counter() - t0, "faces_s": 0.0, "level0_s": 0.0, "level1_s": 0.0}
    rows = file_stamps(rows)
    done = previous_rows(out, model_id)
    if len(done):  # the same file: same path, size and modification time
        key = ["path", SIZE_COLUMN, MTIME_COLUMN]
        done = done.astype({SIZE_COLUMN: "Int64", MTIME_COLUMN: "Int64"})
        same = rows[key].merge(done[key].drop_duplicates(), on=key, how="left", indicator=True)["_merge"]
        skip = pd.Series((same == "both").to_numpy(), index=rows.index)
        done = relabel(done.merge(rows.loc[skip, key], on=key), cfg.threshold)
    else:
        skip = pd.Series(False, index=rows.index)
    explain_dir = Path(cfg.explain_dir) if cfg.explain_dir else None
    if explain_dir is not None:  # a video is done only once its report is there too
        skip &= np.array([(explain_dir / report_name(f, p)).is_file() for f, p in zip(rows["filename"], rows["path"])],
                         dtype=bool)
        done = done[done["path"].isin(rows.loc[skip, "path"])] if len(done) else done
    reports: list[Path] = []
    todo = rows[~skip]
    scored = [done] if len(done) else []
    with tqdm(total=len(rows), initial=int(skip.sum()), desc="videos", unit="video",
              disable=not cfg.progress) as bar:
        for start in range(0, len(todo), cfg.batch_videos):
            chunk = todo.iloc[start:start + cfg.batch_videos]
            part = detector.score(chunk, cfg.threshold, cache, cfg.workers).assign(
                **{MODEL_COLUMN: uri, MODEL_ID_COLUMN: model_id, SIZE_COLUMN: chunk[SIZE_COLUMN].to_numpy(),
                   MTIME_COLUMN: chunk[MTIME_COLUMN].to_numpy()})
            for k, v in detector.timings.items():
                timings[k] = timings.get(k, 0.0) + v
            if explain_dir is not None:
                t1 = time.perf_counter()
                reports += write_detector_reports(detector, part, cfg.threshold, explain_dir, cfg.explain)
                timings["explain_s"] = timings.get("explain_s", 0.0) + time.perf_counter() - t1
            scored.append(part)
            _write(pd.concat(scored, ignore_index=True), out)
            if cfg.cache_max_bytes is not None and detector.last_batch is not None:
                face_cache.touch(detector.last_batch.faces.crops_dir, detector.last_batch.videos["video_id"])
                face_cache.prune(cache, cfg.cache_max_bytes)
            bar.update(len(chunk))
    table = pd.concat(scored, ignore_index=True) if scored else pd.DataFrame()
    table = rows[["path"]].merge(table, on="path", how="left")[table.columns]  # input order, each input once
    _write(table, out)
    return PredictResult(table, out, uri, timings, int(skip.sum()), reports, detector.spec.describe_faces())


def check_threshold(value: float) -> float:
    """A threshold is a probability: a number in [0, 1] (nan and infinities are refused)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"threshold {value!r} is not a number between 0 and 1")
    return float(value)


def _write(table: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(table, out.with_suffix(".parquet"))
    atomic_write_text(table.to_csv(index=False), out)


def report(res: PredictResult) -> str:
    t = res.table
    cols = PRINT_COLUMNS + [c for c in t.columns if c.startswith("score_") or c == AUDIO_STATUS_COLUMN]
    counts = ", ".join(f"{k} {v}" for k, v in t["status"].value_counts().items())
    n = max(len(t) - res.n_skipped, 1)
    lines = ["", t[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"), "",
             f"{len(t)} videos ({counts}); {int((t['label'] == 'FAKE').sum())} labelled FAKE",
             f"{res.n_skipped} already scored by this model in {res.out} (skipped)" if res.n_skipped else "",
             "seconds: " + ", ".join(f"{k[:-2]} {v:.2f}" for k, v in res.timings.items())
             + f" ({sum(v for k, v in res.timings.items() if k != 'load_s') / n:.2f} s per scored video)",
             f"model: {res.model_uri}", f"face settings: {res.face_settings}" if res.face_settings else "",
             f"written: {res.out} and {res.out.with_suffix('.parquet')}",
             f"explanations: {len(res.reports)} HTML reports in {res.reports[0].parent}" if res.reports else ""]
    return "\n".join(line for line in lines if line)


def _threshold_arg(text: str) -> float:
    try:
        return check_threshold(float(text))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1") from None


def parse_args(argv=None) -> tuple[list[str], PredictConfig]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="video files and/or folders of videos")
    parser.add_argument("--model", help="runs:/RUN/detector, models:/NAME/VERSION, models:/NAME@ALIAS or a folder")
    parser.add_argument("--out", help="output CSV (parquet written beside it)")
    parser.add_argument("--threshold", type=_threshold_arg,
                        help=f"FAKE above this P(FAKE), in [0, 1] (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: local sqlite under mlflow/)")
    parser.add_argument("--explain", metavar="DIR", help="write one HTML explanation report per video into DIR")
    add_config_args(parser)
    args = parser.parse_args(argv)
    try:
        cfg = build_config(PredictConfig, PIPELINE, args.profile, args.overrides)
    except (ConfigError, ValueError, TypeError) as err:
        parser.error(f"config: {err}")
    given = {"model": args.model, "out": args.out, "threshold": args.threshold, "tracking_uri": args.tracking_uri,
             "explain_dir": args.explain}
    return args.paths, replace(cfg, **{k: v for k, v in given.items() if v is not None})


def main(argv=None) -> PredictResult:
    paths, cfg = parse_args(argv)
    setup_logging()
    with exit_on_user_error("predict.py", MODEL_ERRORS):
        result = run(paths, cfg)
    print(report(result))
    return result



def cli() -> None:
    """The `fakestack-predict` console script: main() with exit status 0 (its result is for callers)."""
    main()


if __name__ == "__main__":
    main()
