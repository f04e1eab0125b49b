"""What a packaged detector's folder must be before it is loaded: the files packaging wrote, bit
for bit, and a loader that runs no code but fakestack's own.

Why: a model folder is data someone else can write. Packaging (`package.log_detector`) records one
sha256 over every file of the logged model (`model_digest`) where the artifacts cannot rewrite it:
the run's tag DIGEST_TAG and, when registered, the registry version's tag of the same name. Loading
recomputes it and refuses a mismatch. Independently of any record, `check_structure` refuses a
folder whose MLmodel would unpickle a python model, add code paths, or load a models-from-code file
other than fakestack's own `served_model.py` (compared byte for byte with this checkout's copy).

What is checked where:
  - predict.py, `models:/NAME/VERSION` or `@ALIAS`: the version's tag; `runs:/RUN/...`: the run's
    tag; a local folder: the tag of the run its MLmodel names when that run is in the tracking
    store, else `--set model_sha256=HEX` when given, else the structure only (a warning says so).
    All before MLflow loads anything.
  - the model server (`DetectorModel.load_context`): FAKESTACK_MODEL_SHA256 when set, else the tag
    of the run the MLmodel names; MLflow has already run the (structure-checked) code file by then.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import yaml

from features.common import ConfigError

logger = logging.getLogger(__name__)

DIGEST_TAG = "fakestack.model_sha256"  # run and registry-version tag: model_digest of the logged model
CODE_FILE = Path(__file__).with_name("served_model.py")  # the only code a packaged detector may run
IGNORED_FILES = frozenset({"registered_model_meta"})  # written by MLflow's download of a models:/ URI
CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
HASH_BLOCK = 1 << 20  # bytes read per step while hashing a file
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class ModelIntegrityError(ConfigError):
    """The model folder is not what packaging wrote (or would run code other than fakestack's)."""


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def model_files(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file of a model folder (IGNORED_FILES left out). A link is
    refused: it could point anywhere once the folder is copied."""
    root = Path(root)
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise ModelIntegrityError(f"the model folder holds a link ({rel}); a packaged detector has none")
        if path.is_file() and rel not in IGNORED_FILES:
            out[rel] = _file_sha256(path)
    return out


def model_digest(root: Path) -> str:
    """One sha256 over the names and contents of every file of the model folder."""
    return hashlib.sha256(json.dumps(model_files(root), sort_keys=True).encode()).hexdigest()


def check_structure(root: Path) -> dict:
    """The MLmodel of `root`, refused unless its pyfunc is fakestack's models-from-code file and
    nothing else (no pickled python model, no code paths). Returns the parsed MLmodel."""
    mlmodel = Path(root) / "MLmodel"
    try:
        meta = yaml.safe_load(mlmodel.read_text())
        pyfunc = meta["flavors"]["python_function"]
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        raise ModelIntegrityError("the model folder has no readable MLmodel with a python_function flavor") from None
    if pyfunc.get("loader_module") != CODE_LOADER or "python_model" in pyfunc or pyfunc.get("code"):
        raise ModelIntegrityError("the model is not a fakestack models-from-code detector (it would unpickle a "
                                  "python model or load extra code); repackage it with stack.py")
    code = Path(root) / Path(str(pyfunc.get("model_code_path", ""))).name
    if code.name != CODE_FILE.name or not code.is_file() or code.read_bytes() != CODE_FILE.read_bytes():
        raise ModelIntegrityError(f"the model's code file is not fakestack's {CODE_FILE.name}; refusing to run it")
    return meta


def verify(root: Path, expected: str | None) -> str:
    """check_structure, then the digest against `expected` (None: not compared). Returns the digest."""
    check_structure(root)
    digest = model_digest(root)
    if expected is not None:
        if not SHA256_HEX.match(str(expected)):
            raise ModelIntegrityError(f"the recorded model sha256 {str(expected)[:80]!r} is not a sha256")
        if digest != expected:
            raise ModelIntegrityError("the model's files differ from what packaging recorded "
                                      f"({DIGEST_TAG}); refusing to load it")
    return digest


def run_digest(run_id: str | None) -> str | None:
    """The digest recorded on run `run_id` (None: no such run here, or none recorded)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if not run_id:
        return None
    try:
        return MlflowClient().get_run(run_id).data.tags.get(DIGEST_TAG)
    except (MlflowException, OSError) as err:
        logger.info("no recorded digest for run %s (%s)", run_id, type(err).__name__)
        return None


def recorded_digest(uri: str, root: Path | None = None) -> str | None:
    """Where packaging recorded the digest of the model at `uri` (see the module docstring)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    if uri.startswith("models:/"):  # a registry version, an alias, or a logged model id
        ref = uri[len("models:/"):].rstrip("/")
        if "/" not in ref and "@" not in ref:  # MLflow 3's logged-model id (models:/m-...): its run's tag
            return run_digest(client.get_logged_model(ref).source_run_id)
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)
        else:
            name, _, number = ref.rpartition("/")
            version = client.get_model_version(name, number)
        return version.tags.get(DIGEST_TAG)
    if uri.startswith("runs:/"):
        return run_digest(uri[len("runs:/"):].split("/", 1)[0])
    if root is not None:
        try:
            return run_digest((yaml.safe_load((Path(root) / "MLmodel").read_text()) or {}).get("run_id"))
        except (OSError, yaml.YAMLError):
            return None
    return None
