"""The fitted level-1 ensemble as data: JSON, numpy arrays and LightGBM model text, never a pickle.

Why: a pickle runs whatever its bytes say when it is loaded, so a model folder that travels as a
pickle is code. Here every fitted object is written as its state (the attributes scikit-learn's own
`__getstate__` returns) in a JSON tree, every numeric array in one `.npz` read back with
`allow_pickle=False`, and every LightGBM booster as LightGBM's own model text. Loading builds only
classes from a fixed allow-list (`allowed_classes`: fakestack's ensemble, meta-learners and
calibrators, and the few scikit-learn estimators they hold) and fills them with that data, so a
tampered file can change numbers, never run code. A state holding anything else (a function, an
unknown class, an object array) is refused when the ensemble is written, not when it is read.

    write_ensemble(ensemble, folder)   # ensemble.json, ensemble.npz, ensemble_lgbm_<k>.txt
    read_ensemble(folder)              # the same predictions, bit for bit
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from meta.metrics import DECISION_THRESHOLD

logger = logging.getLogger(__name__)

ENSEMBLE_JSON = "ensemble.json"
ENSEMBLE_ARRAYS = "ensemble.npz"
LGBM_TEXT = "ensemble_lgbm_{}.txt"  # one LightGBM model text per booster
FORMAT_VERSION = 1
TAG = "t"  # every encoded value that is not a plain JSON scalar or list is {TAG: kind, ...}
ARRAY_KEY = "a{}"  # the npz key of the k-th array


class EnsembleFormatError(ValueError):
    """The ensemble files are not what write_ensemble writes (or hold a class not allowed)."""


def allowed_classes() -> dict[str, type]:
    """The only classes a stored ensemble may name: fakestack's level-1 classes (from their
    registries, so a new meta-learner is allowed by registering it) and the scikit-learn pieces
    they hold. A name outside this table is refused on load; nothing is ever imported by name."""
    from sklearn.impute import MissingIndicator, SimpleImputer
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import LabelEncoder, StandardScaler

    from meta.calibration import CALIBRATORS
    from meta.ensemble import StackedEnsemble
    from meta.learners import META_LEARNERS

    classes = [StackedEnsemble, Pipeline, SimpleImputer, MissingIndicator, StandardScaler, LogisticRegression,
               IsotonicRegression, LabelEncoder]
    classes += [META_LEARNERS.get(n) for n in META_LEARNERS.names()]
    classes += [CALIBRATORS.get(n) for n in CALIBRATORS.names()]
    return {_class_name(c): c for c in classes}


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class BoosterClassifier:
    """A fitted LightGBM booster with the LGBMClassifier calls fakestack makes (predict_proba,
    predict with raw_score / pred_contrib, booster_): what an LGBMMeta's `model_` is after loading.
    The predictions are the booster's own, as LGBMClassifier computes them."""

    def __init__(self, booster):
        self.booster_ = booster

    def predict_proba(self, X) -> np.ndarray:
        p = self.booster_.predict(X)
        return np.vstack((1.0 - p, p)).transpose()

    def predict(self, X, raw_score: bool = False, pred_contrib: bool = False) -> np.ndarray:
        if raw_score or pred_contrib:
            return self.booster_.predict(X, raw_score=raw_score, pred_contrib=pred_contrib)
        return (self.predict_proba(X)[:, 1] > DECISION_THRESHOLD).astype(int)


class _Writer:
    def __init__(self, allowed: dict[str, type]):
        self.allowed = allowed
        self.arrays: dict[str, np.ndarray] = {}
        self.texts: dict[str, str] = {}

    def encode(self, value: Any, where: str) -> Any:
        from lightgbm import Booster, LGBMClassifier

        if value is None or isinstance(value, (bool, int, float, str)) and not isinstance(value, np.generic):
            return value
        if isinstance(value, np.generic):
            return {TAG: "scalar", "dtype": value.dtype.str, "v": value.item()}
        if isinstance(value, np.dtype):
            return {TAG: "dtype", "v": value.str}
        if isinstance(value, np.ndarray):
            return self._array(value, where)
        if isinstance(value, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {TAG: "tuple", "v": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, dict) and not isinstance(value, defaultdict):
            return {TAG: "dict", "v": [[self.encode(k, f"{where} key"), self.encode(v, f"{where}[{k!r}]")]
                                       for k, v in value.items()]}
        if isinstance(value, pd.Series):
            return {TAG: "series", "index": self.encode(list(value.index), f"{where}.index"),
                    "values": self._array(value.to_numpy(), where), "name": self.encode(value.name, where)}
        if isinstance(value, (LGBMClassifier, BoosterClassifier, Booster)):
            booster = value if isinstance(value, Booster) else value.booster_
            name = LGBM_TEXT.format(len(self.texts))
            self.texts[name] = booster.model_to_string(num_iteration=-1)
            return {TAG: "lgbm", "file": name, "booster": isinstance(value, Booster)}
        name = _class_name(type(value))
        if name not in self.allowed:
            raise EnsembleFormatError(f"{where}: a {name} cannot be stored as data (not in the allowed classes); "
                                      "add it to pipelines.scoring.ensemble_io.allowed_classes if it holds only data")
        state = value.__getstate__() or {}
        if not isinstance(state, dict):
            raise EnsembleFormatError(f"{where}: {name}'s state is not a dict")
        return {TAG: "object", "class": name,
                "state": {k: self.encode(v, f"{where}.{k}") for k, v in state.items()}}

    def _array(self, value: np.ndarray, where: str) -> dict:
        if value.dtype.kind in "biuf":
            key = ARRAY_KEY.format(len(self.arrays))
            self.arrays[key] = value
            return {TAG: "array", "key": key}
        if value.dtype.kind in "OU" and all(isinstance(v, str) for v in value.ravel()):
            dtype = "object" if value.dtype.kind == "O" else value.dtype.str
            return {TAG: "strings", "v": value.tolist(), "dtype": dtype}
        raise EnsembleFormatError(f"{where}: an array of dtype {value.dtype} cannot be stored without pickle")


class _Reader:
    def __init__(self, folder: Path, arrays, allowed: dict[str, type]):
        self.folder, self.arrays, self.allowed = folder, arrays, allowed

    def decode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict) or TAG not in value:
            raise EnsembleFormatError(f"{ENSEMBLE_JSON}: unexpected value {str(value)[:80]!r}")
        kind = value[TAG]
        if kind == "scalar":
            return np.dtype(value["dtype"]).type(value["v"])
        if kind == "dtype":
            return np.dtype(value["v"])
        if kind == "array":
            return self._array(value["key"])
        if kind == "strings":
            return np.array(value["v"], dtype=object if value["dtype"] == "object" else value["dtype"])
        if kind == "tuple":
            return tuple(self.decode(v) for v in value["v"])
        if kind == "dict":
            return {self.decode(k): self.decode(v) for k, v in value["v"]}
        if kind == "series":
            return pd.Series(self._array(value["values"]["key"]), index=self.decode(value["index"]),
                             name=self.decode(value["name"]))
        if kind == "lgbm":
            return self._booster(value["file"], bool(value.get("booster")))
        if kind == "object":
            cls = self.allowed.get(value["class"])
            if cls is None:
                raise EnsembleFormatError(f"{ENSEMBLE_JSON}: class {value['class']!r} is not allowed in a "
                                          "stored ensemble")
            obj = cls.__new__(cls)
            state = {k: self.decode(v) for k, v in value["state"].items()}
            if hasattr(obj, "__setstate__"):
                obj.__setstate__(state)
            else:
                obj.__dict__.update(state)
            return obj
        raise EnsembleFormatError(f"{ENSEMBLE_JSON}: unknown kind {kind!r}")

    def _array(self, key: str) -> np.ndarray:
        if key not in self.arrays:
            raise EnsembleFormatError(f"{ENSEMBLE_ARRAYS}: no array {key!r}")
        return self.arrays[key]

    def _booster(self, name: str, bare: bool):
        from lightgbm import Booster

        path = self.folder / name
        if Path(name).name != name or not path.is_file():
            raise EnsembleFormatError(f"{name!r}: not a LightGBM model file of this ensemble")
        booster = Booster(model_str=path.read_text())
        return booster if bare else BoosterClassifier(booster)


def write_ensemble(ensemble, folder: Path) -> list[Path]:
    """Write `ensemble` as data into `folder`; returns the files written."""
    writer = _Writer(allowed_classes())
    tree = {"format": FORMAT_VERSION, "ensemble": writer.encode(ensemble, "ensemble")}
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / ENSEMBLE_JSON, folder / ENSEMBLE_ARRAYS]
    written[0].write_text(json.dumps(tree, indent=1))
    np.savez(written[1], **writer.arrays)
    for name, text in writer.texts.items():
        (folder / name).write_text(text)
        written.append(folder / name)
    return written


def read_ensemble(folder: Path):
    """The ensemble write_ensemble wrote into `folder` (arrays read with allow_pickle=False)."""
    folder = Path(folder)
    try:
        tree = json.loads((folder / ENSEMBLE_JSON).read_text())
    except (OSError, ValueError) as err:
        raise EnsembleFormatError(f"{ENSEMBLE_JSON}: unreadable ({type(err).__name__})") from None
    if not isinstance(tree, dict) or tree.get("format") != FORMAT_VERSION:
        raise EnsembleFormatError(f"{ENSEMBLE_JSON}: not format {FORMAT_VERSION} of a stored ensemble")
    try:
        with np.load(folder / ENSEMBLE_ARRAYS, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise EnsembleFormatError(f"{ENSEMBLE_ARRAYS}: unreadable ({type(err).__name__})") from None
    try:
        return _Reader(folder, arrays, allowed_classes()).decode(tree["ensemble"])
    except (KeyError, TypeError, AttributeError) as err:
        raise EnsembleFormatError(f"{ENSEMBLE_JSON}: malformed ({type(err).__name__}: {err})") from None
