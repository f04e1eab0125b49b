"""The packaged detector as one MLflow pyfunc model, registered in the Model Registry.

Artifacts (`artifacts/detector/`): `detector.json` (pipelines.scoring.detector.DetectorSpec: the face
stage's and aggregation's settings as used for training, each learner's config and train config),
`ensemble/` (the fitted level-1 ensemble as data: pipelines.scoring.ensemble_io) and
`units/<learner>/fold<k>/model.pt` (the fold models' state dicts; `refit/` instead for the one model
per learner refit on every labelled video; the sound learners' fold models too, when the
ensemble uses them: detector.json's `audio` then holds their stage config, n_frames and folds). The
pyfunc is logged as MLflow "models from code" (`served_model.py`), so nothing is unpickled: the
model loads with MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false. Packaging records the model's sha256
(pipelines.scoring.integrity) on the run and the registry version; loading checks it.

`predict` takes a DataFrame with a `path` column or a `video` column of base64 file bytes (optionally
`filename`) and returns one row per input: filename, path, p_fake, label, status, message, n_faces,
n_frames, score_<learner>, and with a soundtrack learner `audio_status`. Served with `mlflow
models serve` (docs/serving.md): a request without either column, or over a limit (Limits), is
answered with HTTP 400; a bad row (not a video, empty bytes, a path refused) gets its own status
and the other rows are scored; videos are scored one at a time until the deadline, after which the
rest get `timed_out`. The model needs the fakestack
packages importable where it loads.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema

import mlflow
from features.common import ConfigError
from features.contract import REFIT_FOLD, UNIT_FILES, unit_name
from features.faces.config import FaceConfig
from features.faces.face_sets import FROM_VIDEOS, settings_from_dict
from features.faces.face_sets import SETTINGS_FILE as FACE_SETTINGS_FILE
from pipelines.scoring.detector import (
    AUDIO_STATUS_COLUMN,
    DEFAULT_THRESHOLD,
    TEST_TIMES,
    AudioSpec,
    Detector,
    DetectorSpec,
    LearnerSpec,
    check_device,
    check_spec,
    spec_from_dict,
    spec_to_dict,
)
from pipelines.scoring.ensemble_io import EnsembleFormatError, read_ensemble, write_ensemble
from pipelines.scoring.inputs import ALLOWED_ROOTS_ENV, INPUT_COLUMNS, UPLOAD_PREFIX, allowed_roots_from_env, request_rows
from pipelines.scoring.integrity import CODE_FILE, DIGEST_TAG, model_digest, recorded_digest, verify
from pipelines.stacking.model import requirements

logger = logging.getLogger(__name__)

DETECTOR_NAME = "detector"  # the model's artifact path inside the stack sweep run
ARTIFACT_KEY = "detector"
SPEC_FILE = "detector.json"
ENSEMBLE_DIR = "ensemble"
UNITS_DIR = "units"
THRESHOLD_ENV = "FAKESTACK_THRESHOLD"  # the served model's FAKE/REAL threshold (default 0.5)
DEVICE_ENV = "FAKESTACK_DEVICE"  # the served model's device (default: as trained, else CPU)
DIGEST_ENV = "FAKESTACK_MODEL_SHA256"  # the served model's expected digest (default: its run's tag)
SERVER_TIMEOUT_ENV = "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"  # what `mlflow models serve -t` sets
SERVER_TIMEOUT_DEFAULT_S = 60  # MLflow's default for it
DEADLINE_MARGIN_S = 5  # stop scoring this long before the server answers 504, so the rows get back
RUNTIME_PACKAGES = ("numpy", "pandas", "scipy", "scikit-learn", "lightgbm", "torch", "torchvision", "timm",
                    "facenet-pytorch", "opencv-python-headless", "pyarrow")
AUDIO_PACKAGES = ("av",)  # a detector with a soundtrack learner decodes audio with PyAV (features.audio)
# pretrained weights and weight files only matter before training: the fold checkpoints hold every
# weight, so the packaged configs say not to fetch or read any (check_spec refuses a spec that does)
NO_WEIGHTS_AT_LOAD = {"pretrained": False, "weights_path": None}


@dataclass(frozen=True)
class Limits:
    """What one served request may ask for; each has an environment setting (docs/serving.md).
    Why: a request is work and memory on the server; without bounds one client can take both."""

    max_rows: int = 64  # FAKESTACK_MAX_ROWS: rows per request (more: HTTP 400)
    max_videos: int = 16  # FAKESTACK_MAX_VIDEOS: rows decoded per request (the rest: over_limit)
    max_request_bytes: int = 64 * 2**20  # FAKESTACK_MAX_REQUEST_BYTES: path and base64 text (more: 400)
    deadline_s: float = SERVER_TIMEOUT_DEFAULT_S - DEADLINE_MARGIN_S  # FAKESTACK_DEADLINE_S

    ENV = {"max_rows": "FAKESTACK_MAX_ROWS", "max_videos": "FAKESTACK_MAX_VIDEOS",
           "max_request_bytes": "FAKESTACK_MAX_REQUEST_BYTES", "deadline_s": "FAKESTACK_DEADLINE_S"}

    @classmethod
    def from_env(cls) -> Limits:
        """The limits from the environment, checked once when the model loads (a bad value stops
        the server at start). The deadline defaults to the server's own timeout less a margin."""
        server_s = _positive(SERVER_TIMEOUT_ENV, float, SERVER_TIMEOUT_DEFAULT_S)
        values = {"deadline_s": max(server_s - DEADLINE_MARGIN_S, DEADLINE_MARGIN_S)}
        for name, env in cls.ENV.items():
            if os.environ.get(env):
                values[name] = _positive(env, float if name == "deadline_s" else int, None)
        return cls(**values)


def _positive(env: str, kind: type, default):
    raw = os.environ.get(env)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{env}={raw[:40]!r} is not a positive {kind.__name__}") from None
    if not value > 0 or (kind is float and not math.isfinite(value)):
        raise ConfigError(f"{env}={raw[:40]!r} is not a positive {kind.__name__}")
    return value


class DetectorModel(mlflow.pyfunc.PythonModel):
    """pyfunc: files in, verdicts out (see the module docstring). Built empty by served_model.py;
    everything it knows is read in load_context."""

    def __init__(self):
        self.detector: Detector | None = None
        self.threshold = DEFAULT_THRESHOLD
        self.limits = Limits()
        self.roots = None

    def load_context(self, context) -> None:
        folder = Path(context.artifacts[ARTIFACT_KEY])
        root = folder.parents[1]  # <model>/artifacts/detector
        expected = os.environ.get(DIGEST_ENV) or recorded_digest("", root)
        verify(root, expected)
        if expected is None:
            logger.warning("fakestack: no recorded sha256 for this model (set %s); only its structure was checked",
                           DIGEST_ENV)
        self.threshold = _threshold_from_env()
        self.limits = Limits.from_env()
        self.roots = allowed_roots_from_env()
        device = os.environ.get(DEVICE_ENV) or None
        check_device(device)  # before the server answers /ping: a missing GPU stops it at start
        self.detector = load_detector_folder(folder, device)
        remove_stale_uploads()
        logger.warning("fakestack: %s", serving_banner(self.roots, self.limits))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        self._check_limits(frame)
        deadline = time.monotonic() + self.limits.deadline_s
        with tempfile.TemporaryDirectory(prefix=f"{UPLOAD_PREFIX}{os.getpid()}-") as tmp:
            try:
                rows, show = request_rows(frame, Path(tmp), self.roots)
            except KeyError as err:
                raise MlflowException(str(err.args[0]), error_code=INVALID_PARAMETER_VALUE) from None
            out = score_until(self.detector, rows, self.threshold, self.limits.max_videos, deadline)
        out["path"] = show  # never a server path the client did not send
        return out

    def _check_limits(self, frame: pd.DataFrame) -> None:
        if len(frame) > self.limits.max_rows:
            raise MlflowException(f"{len(frame)} rows in one request; at most {self.limits.max_rows} "
                                  f"({Limits.ENV['max_rows']})", error_code=INVALID_PARAMETER_VALUE)
        size = sum(len(v) for c in ("video", "path") if c in frame.columns for v in frame[c] if isinstance(v, str))
        if size > self.limits.max_request_bytes:
            raise MlflowException(f"{size} bytes of paths and video in one request; at most "
                                  f"{self.limits.max_request_bytes} ({Limits.ENV['max_request_bytes']})",
                                  error_code=INVALID_PARAMETER_VALUE)


SCORE_ERRORS = (OSError, ValueError, RuntimeError, KeyError)  # one video's failure, not the request's


def score_until(detector: Detector, rows: pd.DataFrame, threshold: float, max_videos: int,
                deadline: float) -> pd.DataFrame:
    """Score `rows` one video at a time, checking the deadline (time.monotonic) between videos:
    past it, or past `max_videos`, the remaining rows get `timed_out` / `over_limit` and the
    training prior, so a request the server has given up on stops using the CPU. One video's
    failure is that row's status; the others are scored."""
    rows = rows.reset_index(drop=True).copy()
    todo = list(rows.index[rows["status"].isna()])
    for i in todo[max_videos:]:
        rows.loc[i, ["status", "message"]] = ["over_limit", f"more than {max_videos} videos in one request "
                                                            f"({Limits.ENV['max_videos']}); not read"]
    parts = {}
    for i in todo[:max_videos]:
        if time.monotonic() > deadline:
            rows.loc[i, ["status", "message"]] = ["timed_out", "the request's deadline passed before this video"]
            continue
        try:
            parts[i] = detector.score(rows.loc[[i], INPUT_COLUMNS], threshold=threshold)
        except SCORE_ERRORS as err:
            logger.exception("fakestack: one video could not be scored")
            rows.loc[i, ["status", "message"]] = ["unreadable", f"could not be scored ({type(err).__name__})"]
    rest = [i for i in rows.index if i not in parts]
    if rest:
        done = detector.score(rows.loc[rest, INPUT_COLUMNS], threshold=threshold)
        parts.update({i: done.iloc[[k]] for k, i in enumerate(rest)})
    return pd.concat([parts[i] for i in rows.index], ignore_index=True)


def serving_banner(roots, limits: Limits) -> str:
    """The start-up line: what clients may make this server read, and the limits."""
    paths = (f"path requests may read files under {', '.join(map(str, roots))}" if roots else
             f"path requests are OFF (set {ALLOWED_ROOTS_ENV}=/abs/folder[{os.pathsep}...] to allow some folders); "
             "uploaded bytes are scored")
    return (f"{paths}; limits: {limits.max_rows} rows, {limits.max_videos} videos, {limits.max_request_bytes} "
            f"bytes per request, deadline {limits.deadline_s:.0f} s")


def remove_stale_uploads(tmp_root: Path | None = None) -> int:
    """Remove upload folders left by server processes that are gone (a SIGKILL skips the cleanup of
    a TemporaryDirectory). A folder whose process still runs is left alone. Returns how many went."""
    removed = 0
    for folder in Path(tmp_root or tempfile.gettempdir()).glob(f"{UPLOAD_PREFIX}*"):
        pid = folder.name[len(UPLOAD_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)) or not folder.is_dir() or folder.is_symlink():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours to clean
        return True
    return True


def load_detector_folder(folder: Path, device: str | None) -> Detector:
    """The Detector of an artifacts folder: detector.json checked against what packaging allows,
    the ensemble read as data, every checkpoint loaded (a damaged one is a ConfigError)."""
    try:
        spec = spec_from_dict(json.loads((folder / SPEC_FILE).read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"the detector's {SPEC_FILE} is unreadable ({type(err).__name__})") from None
    check_spec(spec, folder / UNITS_DIR)
    try:
        ensemble = read_ensemble(folder / ENSEMBLE_DIR)
    except EnsembleFormatError as err:
        raise ConfigError(f"the detector's ensemble cannot be loaded: {err}") from None
    detector = Detector(spec, ensemble, folder / UNITS_DIR, device=device)
    detector.load_all()
    return detector


def _threshold_from_env() -> float:
    """FAKESTACK_THRESHOLD, checked once when the model loads (a bad value stops the server at start)."""
    raw = os.environ.get(THRESHOLD_ENV, str(DEFAULT_THRESHOLD))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{THRESHOLD_ENV}={raw!r} is not a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{THRESHOLD_ENV}={raw!r} is not a number between 0 and 1")
    return value


def write_artifacts(folder: Path, spec: DetectorSpec, unit_dirs: dict[tuple[str, int], Path], ensemble) -> Path:
    """The detector folder: the spec as JSON, the ensemble as data and each fold model's checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPEC_FILE).write_text(json.dumps(spec_to_dict(spec), indent=1))
    write_ensemble(ensemble, folder / ENSEMBLE_DIR)
    for (learner, fold), unit_dir in unit_dirs.items():
        dest = folder / UNITS_DIR / learner / unit_name(fold)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(unit_dir) / UNIT_FILES[0], dest / UNIT_FILES[0])
    return folder


def signature(learners: list[str], audio: bool = False) -> ModelSignature:
    inputs = Schema([ColSpec("string", "path", required=False), ColSpec("string", "video", required=False),
                     ColSpec("string", "filename", required=False)])
    cols = [ColSpec("string", "filename"), ColSpec("string", "path"), ColSpec("double", "p_fake"),
            ColSpec("string", "label"), ColSpec("string", "status"), ColSpec("string", "message"),
            ColSpec("long", "n_faces"), ColSpec("long", "n_frames")]
    cols += [ColSpec("double", f"score_{name}") for name in learners]
    cols += [ColSpec("string", AUDIO_STATUS_COLUMN)] if audio else []
    return ModelSignature(inputs=inputs, outputs=Schema(cols))


def log_detector(spec: DetectorSpec, ensemble, unit_dirs: dict[tuple[str, int], Path],
                 registered_name: str | None) -> mlflow.models.model.ModelInfo:
    """Log the detector into the active run as models-from-code (and register a new version under
    `registered_name`); record its digest as the run's and the version's DIGEST_TAG."""
    with tempfile.TemporaryDirectory(prefix="fakestack-detector-") as tmp:
        folder = write_artifacts(Path(tmp) / ARTIFACT_KEY, spec, unit_dirs, ensemble)
        info = mlflow.pyfunc.log_model(
            name=DETECTOR_NAME, python_model=str(CODE_FILE), artifacts={ARTIFACT_KEY: str(folder)},
            signature=signature(spec.score_learners(), audio=spec.audio is not None),
            pip_requirements=requirements(RUNTIME_PACKAGES + (AUDIO_PACKAGES if spec.audio else ())),
            registered_model_name=registered_name or None,
        )
        logged = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(Path(tmp) / "logged"))
        digest = model_digest(Path(logged))
    mlflow.set_tag(DIGEST_TAG, digest)
    version_ = getattr(info, "registered_model_version", None)
    if registered_name and version_:
        mlflow.MlflowClient().set_model_version_tag(registered_name, str(version_), DIGEST_TAG, digest)
    return info


class PackagingError(RuntimeError):
    """The oof run lacks what the detector needs (its units table, checkpoints or config)."""


def face_settings_of(oof_dir: Path, faces: dict, face_images: bool) -> tuple[dict, dict]:
    """(face stage settings, what the detector records of them) of an oof run.

    Why: a detector crops every video it scores with these settings, so they must be the ones that
    made its training crops. A run on videos made them itself. A run that holds face images knows
    them only when they were stated or estimated (features.faces.face_sets, written beside its
    tables); its videos were cropped with that margin, and so will the detector's be. Without them
    no detector is packaged: it would crop with settings that never made its training crops."""
    path = Path(oof_dir) / FACE_SETTINGS_FILE
    settings = settings_from_dict(json.loads(path.read_text())) if path.is_file() else None
    if settings is None and face_images:
        raise PackagingError("trained on pre-extracted face images whose face settings are unknown: state them "
                             "(oof.py --set face_images.margin=M [--set face_images.crop_size=PX]) or let oof.py "
                             "estimate them (face_images.estimate: true), then rerun oof.py")
    if settings is None:
        return faces, {"how": FROM_VIDEOS, "margin": float(faces.get("margin", FaceConfig.margin)),
                       "crop_size": int(faces.get("crop_size", FaceConfig.crop_size))}
    return {**faces, "margin": settings.margin}, {**settings.to_dict(), "learner_crop_size": faces.get("crop_size")}


def spec_from_oof(oof_dir: Path, units: pd.DataFrame | None, learners: list[str], aggregate: dict,
                  columns: list[str], info: dict, test_time: str, face_images: bool = False
                  ) -> tuple[DetectorSpec, dict]:
    """The DetectorSpec of an oof run's fold models (or refit models) for `learners`, and their
    unit folders.

    The face settings come from the oof run's resolved config.yaml, with a face set's margin when
    the run holds face images (face_settings_of); each learner's config and train config from its
    units' own metrics.json (exactly what trained them). The sound learners (oof.py's `audio`
    section: the soundtrack learner and, with `audio.lipsync`, the lip-sync learner) get one
    AudioSpec from that config instead, with the face stage's n_frames the soundtrack windows are
    centred on and each one's folds (fold models only)."""
    config_path = Path(oof_dir) / "config.yaml"
    if units is None or not config_path.is_file():
        raise PackagingError(f"{oof_dir}: no units table or config.yaml (an oof run from before the "
                             "packaged detector); rerun pipelines/oof.py to package one")
    config = yaml.safe_load(config_path.read_text())
    faces, assumed = face_settings_of(oof_dir, config["faces"], face_images)
    if test_time not in TEST_TIMES:
        raise PackagingError(f"test_time {test_time!r} is not one of {TEST_TIMES}")
    audio_cfg = config.get("audio") or {}
    audio_learner = audio_cfg.get("learner") if audio_cfg.get("enabled") else None
    lipsync = audio_cfg.get("lipsync") or {}
    lipsync_learner = lipsync.get("learner") if audio_learner and lipsync.get("enabled") else None
    specs, unit_dirs, sound = {}, {}, {}
    for learner in learners:
        dirs = _unit_dirs(oof_dir, units, learner, test_time, audio=learner in (audio_learner, lipsync_learner))
        unit_dirs.update({(learner, k): d for k, d in dirs.items()})
        if learner in (audio_learner, lipsync_learner):
            sound[learner] = list(dirs)
            continue
        metrics = json.loads((next(iter(dirs.values())) / UNIT_FILES[-1]).read_text())
        specs[learner] = LearnerSpec(_no_weights_at_load(metrics["learner_config"]), metrics["train_config"], list(dirs))
    audio = AudioSpec(config=audio_cfg, n_frames=int(config["faces"]["n_frames"]), folds=sound.get(audio_learner, []),
                      lipsync_folds=sound.get(lipsync_learner, [])) if sound else None
    spec = DetectorSpec(faces=faces, aggregate=aggregate, learners=specs, columns=list(columns),
                        test_time=test_time, info=info, face_settings=assumed, audio=audio)
    return spec, unit_dirs


def _unit_dirs(oof_dir: Path, units: pd.DataFrame, learner: str, test_time: str, audio: bool) -> dict[int, Path]:
    """fold -> unit folder of a learner's units for `test_time` (fold models, or its refit model),
    each checked to hold its checkpoint."""
    refit = test_time == "refit"
    if refit and audio:
        raise PackagingError(f"the sound learner {learner!r} has fold models only (oof.py trains no refit "
                             "model of it); package with test_time=fold_models")
    rows = units[(units["learner"] == learner) & ((units["fold"] == REFIT_FOLD) == refit)].sort_values("fold")
    if rows.empty:
        why = (" (train them with oof.py --set refit=true)" if refit else
               " (an oof run from before the packaged sound learners: rerun oof.py, which loads its units "
               "from the cache)" if audio else "")
        raise PackagingError(f"{oof_dir}: no {test_time} units of learner {learner!r} in the units table{why}")
    out = {}
    for row in rows.itertuples(index=False):
        unit_dir = (Path(oof_dir) / row.dir).resolve()
        if not (unit_dir / UNIT_FILES[0]).is_file():
            raise PackagingError(f"{unit_dir}: the checkpoint {UNIT_FILES[0]} of {learner} fold {row.fold} "
                                 "is missing (the oof workdir must be on this machine)")
        out[int(row.fold)] = unit_dir
    return out


def _no_weights_at_load(learner_config: dict) -> dict:
    """A learner config as the packaged detector builds it: the checkpoint holds every weight, so no
    pretrained download, weights file or sequence encoder file is named (check_spec enforces it)."""
    out = {**learner_config, **NO_WEIGHTS_AT_LOAD}
    if isinstance(out.get("sequence"), dict):
        out["sequence"] = {**out["sequence"], "encoder_weights": None}
    return out


def register_scores(info: mlflow.models.model.ModelInfo, name: str, scores: dict[str, float],
                    description: str) -> str | None:
    """Tag the registered version with its scores (the UI's Models page shows them)."""
    version_ = getattr(info, "registered_model_version", None)
    if not version_:
        return None
    client = mlflow.MlflowClient()
    for key, value in scores.items():
        client.set_model_version_tag(name, str(version_), key, f"{value:.6f}")
    client.update_model_version(name, str(version_), description=description)
    return str(version_)
