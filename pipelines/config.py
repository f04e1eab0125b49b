"""Profiles and command-line overrides for the pipeline configs.

A pipeline's config is one typed dataclass whose defaults live in the dataclass itself. A profile
(`pipelines/profiles/<profile>/<pipeline>.yaml`) overrides some of them, and `--set a.b=value`
overrides those again. Unknown keys fail loudly; the resolved config is saved with every run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TypeVar

import yaml

from features.common import ConfigError, from_dict
from features.corpus.folds import FoldError
from features.corpus.readers import CorpusError

T = TypeVar("T")
PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the code's own folder: for its git commit only
HOME_ENV = "FAKESTACK_HOME"  # where the work folder and the MLflow store live (default: the current folder)
HOME = Path(os.environ.get(HOME_ENV) or ".").resolve()
DEFAULT_PROFILE = "demo"
# what a user's mistake raises (a wrong path, bad metadata, a bad setting): one message, exit status 2
USER_ERRORS = (ConfigError, CorpusError, FoldError, FileNotFoundError, NotADirectoryError)


def profiles() -> list[str]:
    return sorted(p.name for p in PROFILE_DIR.iterdir() if p.is_dir())


def load_profile(profile: str, pipeline: str) -> dict[str, Any]:
    """The profile's YAML for one pipeline as a dict (empty when the profile leaves it at defaults)."""
    if profile not in profiles():
        raise ConfigError(f"unknown profile {profile!r}; valid: {', '.join(profiles())}")
    path = PROFILE_DIR / profile / f"{pipeline}.yaml"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one `dotted.key=value` override in place; the value is parsed as YAML."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form key.path=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
    node[parts[-1]] = parse_value(raw)


def parse_value(raw: str) -> Any:
    """YAML scalar/list parsing, plus numbers YAML 1.1 leaves as strings (`1e-3`)."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def build_config(cls: type[T], pipeline: str, profile: str, overrides: list[str] | None = None) -> T:
    """Dataclass defaults <- profile YAML <- `--set` overrides, validated into `cls`."""
    data = load_profile(profile, pipeline)
    for override in overrides or []:
        apply_override(data, override)
    return from_dict(cls, data, where=f"{profile}/{pipeline}")


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The flags every pipeline shares: --profile and repeated --set key=value."""
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="profile folder under pipelines/profiles")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set faces.n_frames=32 (repeatable)",
    )

WORK_DIR = HOME / ".fakestack"  # git-ignored: embedded corpus, face cache, checkpoints, tables


LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    """Entry points only: what library code reports (cache reuse, units to train) goes to stderr."""
    logging.basicConfig(level=level, format=LOG_FORMAT)


@contextmanager
def exit_on_user_error(prog: str, extra: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Turn a user's mistake into `prog: error: message` on stderr and exit status 2, not a traceback."""
    try:
        yield
    except USER_ERRORS + extra as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
