"""The fitted stacked ensemble as an MLflow pyfunc model: video_features in, P(FAKE) out.

The wrapper holds the fitted meta.ensemble.StackedEnsemble (pickled by MLflow with the model) and
the feature columns it needs, so `mlflow.pyfunc.load_model(uri).predict(video_features)` gives the
same probabilities the pipeline submitted. The signature names those columns; extra columns of a
video_features frame (label, status, ...) are ignored. The model needs the fakestack packages
(meta, features) importable where it is loaded, as in this repo's environment.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pandas as pd
from mlflow.models import infer_signature

import mlflow
from features.aggregate import SEP

MODEL_NAME = "model"
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
    """pyfunc wrapper: predict(video_features) -> P(FAKE) per row."""

    def __init__(self, ensemble, columns: list[str]):
        self.ensemble = ensemble
        self.columns = list(columns)

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
    wrapper = StackedEnsembleModel(ensemble, columns)
    signature = infer_signature(example, wrapper.predict(None, example))
    return mlflow.pyfunc.log_model(
        name=MODEL_NAME, python_model=wrapper, signature=signature, input_example=example,
        pip_requirements=requirements(),
    )
