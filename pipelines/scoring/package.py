"""The packaged detector as one MLflow pyfunc model, registered in the Model Registry.

Artifacts: `detector/detector.json` (pipelines.scoring.detector.DetectorSpec: the face stage's and
aggregation's settings as used for training, each learner's config and train config) and
`detector/units/<learner>/fold<k>/model.pt` (the fold models' state dicts; `refit/` instead for the
one model per learner refit on every labelled video). The fitted level-1
ensemble travels inside the pickled python model. `predict` takes a DataFrame with a `path`
column or a `video` column of base64 file bytes (optionally `filename`) and returns one row per
input: filename, path, p_fake, label, status, message, n_faces, n_frames, score_<learner>.

Served with `mlflow models serve`, a request without either column is answered with HTTP 400; a
bad row (not a video, empty bytes, a path outside FAKESTACK_ALLOWED_ROOTS) gets its own status
and the other rows are scored. The model needs the fakestack packages importable where it loads.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema

from base_learners.oof import REFIT_FOLD, UNIT_FILES, unit_name
from pipelines.scoring.detector import (DEFAULT_THRESHOLD, TEST_TIMES, Detector, DetectorSpec, LearnerSpec,
                                        spec_from_dict, spec_to_dict)
from pipelines.scoring.inputs import request_rows
from pipelines.stacking.model import requirements

DETECTOR_NAME = "detector"  # the model's artifact path inside the stack sweep run
ARTIFACT_KEY = "detector"
SPEC_FILE = "detector.json"
UNITS_DIR = "units"
THRESHOLD_ENV = "FAKESTACK_THRESHOLD"  # the served model's FAKE/REAL threshold (default 0.5)
DEVICE_ENV = "FAKESTACK_DEVICE"  # the served model's device (default: as trained, else CPU)
RUNTIME_PACKAGES = ("numpy", "pandas", "scipy", "scikit-learn", "lightgbm", "torch", "torchvision", "timm",
                    "facenet-pytorch", "opencv-python-headless", "pyarrow")


class DetectorModel(mlflow.pyfunc.PythonModel):
    """pyfunc: files in, verdicts out (see the module docstring)."""

    def __init__(self, ensemble):
        self.ensemble = ensemble
        self.detector: Detector | None = None
        self.threshold = DEFAULT_THRESHOLD

    def load_context(self, context) -> None:
        self.threshold = _threshold_from_env()
        folder = Path(context.artifacts[ARTIFACT_KEY])
        spec = spec_from_dict(json.loads((folder / SPEC_FILE).read_text()))
        self.detector = Detector(spec, self.ensemble, folder / UNITS_DIR, device=os.environ.get(DEVICE_ENV))
        self.detector.load_all()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        threshold = self.threshold
        with tempfile.TemporaryDirectory(prefix="fakestack-upload-") as tmp:
            try:
                rows, as_bytes = request_rows(pd.DataFrame(model_input), Path(tmp))
            except KeyError as err:
                raise MlflowException(str(err.args[0]), error_code=INVALID_PARAMETER_VALUE) from None
            out = self.detector.score(rows, threshold=threshold)
        out.loc[as_bytes, "path"] = ""  # a temporary upload file means nothing to the client
        return out


def _threshold_from_env() -> float:
    """FAKESTACK_THRESHOLD, checked once when the model loads (a bad value stops the server at start)."""
    raw = os.environ.get(THRESHOLD_ENV, str(DEFAULT_THRESHOLD))
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{THRESHOLD_ENV}={raw!r} is not a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{THRESHOLD_ENV}={raw!r} is not a number between 0 and 1")
    return value


def write_artifacts(folder: Path, spec: DetectorSpec, unit_dirs: dict[tuple[str, int], Path]) -> Path:
    """The detector folder: the spec as JSON and each fold model's checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPEC_FILE).write_text(json.dumps(spec_to_dict(spec), indent=1))
    for (learner, fold), unit_dir in unit_dirs.items():
        dest = folder / UNITS_DIR / learner / unit_name(fold)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(unit_dir) / UNIT_FILES[0], dest / UNIT_FILES[0])
    return folder


def signature(learners: list[str]) -> ModelSignature:
    inputs = Schema([ColSpec("string", "path", required=False), ColSpec("string", "video", required=False),
                     ColSpec("string", "filename", required=False)])
    cols = [ColSpec("string", "filename"), ColSpec("string", "path"), ColSpec("double", "p_fake"),
            ColSpec("string", "label"), ColSpec("string", "status"), ColSpec("string", "message"),
            ColSpec("long", "n_faces"), ColSpec("long", "n_frames")]
    cols += [ColSpec("double", f"score_{name}") for name in learners]
    return ModelSignature(inputs=inputs, outputs=Schema(cols))


def log_detector(spec: DetectorSpec, ensemble, unit_dirs: dict[tuple[str, int], Path],
                 registered_name: str | None) -> mlflow.models.model.ModelInfo:
    """Log the detector into the active run (and register a new version under `registered_name`)."""
    with tempfile.TemporaryDirectory(prefix="fakestack-detector-") as tmp:
        folder = write_artifacts(Path(tmp) / ARTIFACT_KEY, spec, unit_dirs)
        return mlflow.pyfunc.log_model(
            name=DETECTOR_NAME, python_model=DetectorModel(ensemble), artifacts={ARTIFACT_KEY: str(folder)},
            signature=signature(list(spec.learners)), pip_requirements=requirements(RUNTIME_PACKAGES),
            registered_model_name=registered_name or None,
        )


class PackagingError(RuntimeError):
    """The oof run lacks what the detector needs (its units table, checkpoints or config)."""


def spec_from_oof(oof_dir: Path, units: pd.DataFrame | None, learners: list[str], aggregate: dict,
                  columns: list[str], info: dict, test_time: str) -> tuple[DetectorSpec, dict]:
    """The DetectorSpec of an oof run's fold models (or refit models) for `learners`, and their
    unit folders.

    The face settings come from the oof run's resolved config.yaml; each learner's config and train
    config from its units' own metrics.json (exactly what trained them)."""
    config_path = Path(oof_dir) / "config.yaml"
    if units is None or not config_path.is_file():
        raise PackagingError(f"{oof_dir}: no units table or config.yaml (an oof run from before the "
                             "packaged detector); rerun pipelines/oof.py to package one")
    faces = yaml.safe_load(config_path.read_text())["faces"]
    specs, unit_dirs = {}, {}
    if test_time not in TEST_TIMES:
        raise PackagingError(f"test_time {test_time!r} is not one of {TEST_TIMES}")
    refit = test_time == "refit"
    for learner in learners:
        rows = units[(units["learner"] == learner) & ((units["fold"] == REFIT_FOLD) == refit)].sort_values("fold")
        if rows.empty:
            raise PackagingError(f"{oof_dir}: no {test_time} units of learner {learner!r} in the units table"
                                 + (" (train them with oof.py --set refit=true)" if refit else ""))
        metrics = []
        for row in rows.itertuples(index=False):
            unit_dir = (Path(oof_dir) / row.dir).resolve()
            if not (unit_dir / UNIT_FILES[0]).is_file():
                raise PackagingError(f"{unit_dir}: the checkpoint {UNIT_FILES[0]} of {learner} fold {row.fold} "
                                     "is missing (the oof workdir must be on this machine)")
            metrics.append(json.loads((unit_dir / UNIT_FILES[-1]).read_text()))
            unit_dirs[(learner, int(row.fold))] = unit_dir
        specs[learner] = LearnerSpec(metrics[0]["learner_config"], metrics[0]["train_config"],
                                     [int(f) for f in rows["fold"]])
    spec = DetectorSpec(faces=faces, aggregate=aggregate, learners=specs, columns=list(columns),
                        test_time=test_time, info=info)
    return spec, unit_dirs


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
