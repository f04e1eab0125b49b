"""The fitted stacked ensemble as an MLflow pyfunc model: video_features in, P(FAKE) out.

Logged as MLflow "models from code", like the packaged detector (pipelines.scoring.package): the
model folder holds `ensemble_model.py` (three lines naming `StackedEnsembleModel`), the ensemble as
data (pipelines.scoring.ensemble_io: JSON, arrays read without pickle, LightGBM model text) and
`columns.json`, the feature columns it needs. Why: a pickled python model runs whatever its bytes
say when it is loaded; this one loads with MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false and gives the
same probabilities the pipeline submitted (`mlflow.pyfunc.load_model(uri).predict(video_features)`).
The signature names those columns; extra columns of a video_features frame (label, status, ...) are
ignored. The model needs the fakestack packages (meta, features, pipelines) importable where it is
loaded, as in this repo's environment.
"""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.models import infer_signature

import mlflow
from features.aggregate import SEP
from pipelines.scoring.ensemble_io import read_ensemble, write_ensemble

MODEL_NAME = "model"
CODE_FILE = Path(__file__).with_name("ensemble_model.py")  # the models-from-code file MLflow runs
ARTIFACT_KEY = "ensemble"
COLUMNS_FILE = "columns.json"
INPUT_EXAMPLE_ROWS = 5
VIDEO_INPUT_COLUMNS = ("n_frames", "n_faces", "n_sampled", "det_prob_mean")
# pinned explicitly: MLflow's own inference imports the model in a subprocess (seconds per model)
RUNTIME_PACKAGES = ("numpy", "pandas", "scipy", "scikit-learn", "lightgbm")


def input_columns(ensemble, features: pd.DataFrame) -> list[str]:
    """Every `{learner}__{stat}` column of the ensemble's learners plus the video columns."""
    learners = set(ensemble.meta_.learners_)
    cols = [c for c in features.columns if SEP in c and c.split(SEP, 1)[0] in learners]
    return cols + [c for c in VIDEO_INPUT_COLUMNS if c in features.columns]


def model_input(features: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The model's input frame: numpy integer columns (frame and face counts) stay integers, the
    rest become float (a nullable column with gaps becomes NaN). MLflow's schema check refuses
    int -> float at predict time, so the signature must keep the frame's own integer types."""
    X = features[columns]
    ints = [c for c in columns if pd.api.types.is_integer_dtype(X[c]) and not X[c].isna().any()
            and isinstance(X[c].dtype, np.dtype)]
    return X.astype({c: (X[c].dtype if c in ints else float) for c in columns})


class StackedEnsembleModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: predict(video_features) -> P(FAKE) per row. Built empty by ensemble_model.py
    and filled from the logged data in load_context (or given an ensemble directly)."""

    def __init__(self, ensemble=None, columns: list[str] | None = None):
        self.ensemble = ensemble
        self.columns = list(columns or [])

    def load_context(self, context) -> None:
        folder = Path(context.artifacts[ARTIFACT_KEY])
        self.ensemble = read_ensemble(folder)
        self.columns = list(json.loads((folder / COLUMNS_FILE).read_text()))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        missing = [c for c in self.columns if c not in model_input.columns]
        if missing:
            raise KeyError(f"video_features lacks columns the ensemble needs: {missing[:5]}")
        X = model_input[self.columns]
        return self.ensemble.predict_proba(X)[:, 1]


def requirements(packages: tuple[str, ...] = RUNTIME_PACKAGES) -> list[str]:
    """Pinned pip requirements of the installed `packages` (unpinned where one is not installed)."""
    reqs = []
    for pkg in packages:
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def log_ensemble(ensemble, features: pd.DataFrame) -> mlflow.models.model.ModelInfo:
    """Log the fitted ensemble into the active run; returns ModelInfo (model_uri to load it)."""
    columns = input_columns(ensemble, features)
    example = model_input(features.head(INPUT_EXAMPLE_ROWS), columns)
    signature = infer_signature(example, StackedEnsembleModel(ensemble, columns).predict(None, example))
    with tempfile.TemporaryDirectory(prefix="fakestack-ensemble-") as tmp:
        folder = Path(tmp) / ARTIFACT_KEY
        write_ensemble(ensemble, folder)
        (folder / COLUMNS_FILE).write_text(json.dumps(columns))
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME, python_model=str(CODE_FILE), artifacts={ARTIFACT_KEY: str(folder)},
            signature=signature, input_example=example, pip_requirements=requirements(),
        )
