"""Small shared building blocks: registries, typed configs, content hashes, atomic writes.

Every stage of fakestack is a function over tidy tables with a typed config. These helpers keep
the three cross-cutting promises in one place: unknown names and keys fail loudly with the valid
choices listed, values of the wrong type fail on load (pydantic checks each value against its
field's annotation), finished work is recognised by a content hash of its inputs and config, and a
file that exists is complete (written to a temporary name, then renamed).

Fields that cannot change a result (processes, progress bars, paths, where work runs) are declared
with `runtime_field`: `result_dict` and `config_hash` leave them out, so no cache key depends on
them. Thread counts and devices can change results bit for bit: they are ordinary fields.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

import pandas as pd
import pydantic

T = TypeVar("T")
HASH_CHARS = 16  # hex characters kept from a sha256: short enough for file names, ample for caches


class Registry(Generic[T]):
    """A name -> factory table; unknown names raise with the list of valid ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items))
            raise KeyError(f"unknown {self.kind} {name!r}; valid: {valid}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


class ConfigError(ValueError):
    """A config key or value that does not fit the typed config."""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> Any:
    """`X | None` -> X, so nested dataclasses may be optional."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


RUNTIME = "runtime"  # field metadata key: the field cannot change any result


def runtime_field(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A dataclass field that cannot change a result: left out of `result_dict` and cache keys."""
    return dataclasses.field(default=default, metadata={RUNTIME: True}, **kwargs)


ADDED = "added"  # field metadata key: keyed only when it differs from its default


def added_field(default: Any, **kwargs: Any) -> Any:
    """A field added to a config after results were cached under its keys: left out of
    `result_dict` (so of every cache key) while it holds `default`, so adding it invalidates
    nothing; any other value is keyed like an ordinary field. `default` must be immutable."""
    return dataclasses.field(default=default, metadata={ADDED: True}, **kwargs)


def _keyed(cfg: Any, f: dataclasses.Field) -> bool:
    """Whether field `f` of dataclass `cfg` reaches `result_dict` (see runtime_field, added_field)."""
    if f.metadata.get(RUNTIME):
        return False
    return not (f.metadata.get(ADDED) and getattr(cfg, f.name) == f.default)


@functools.lru_cache(maxsize=None)
def _adapter(tp: Any) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(tp)


def _check_type(tp: Any, value: Any, where: str) -> Any:
    """`value` validated against the annotation `tp` (pydantic's lax mode: "3" for an int is
    accepted, "abc" is not); the error names the key. Annotations pydantic cannot build (rare)
    pass unchecked."""
    try:
        adapter = _adapter(tp)
    except (pydantic.PydanticSchemaGenerationError, TypeError):
        return value
    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError as err:
        reason = err.errors()[0]["msg"]
        raise ConfigError(f"{where}: {value!r} does not fit {_type_name(tp)} ({reason})") from None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Build nested dataclasses and tuples from plain YAML/JSON values, each value checked against
    its annotation. An empty value (`--set key=`, YAML null) is None where the field allows None,
    "" for a string field, and an error elsewhere."""
    optional = _unwrap_optional(tp) is not tp or tp is Any or tp is type(None)
    tp = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        if tp is str:
            return ""
        raise ConfigError(f"{where}: an empty value does not fit {_type_name(tp)}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple and isinstance(value, (list, tuple)):
        return _check_type(tp, tuple(value), where)
    if origin is list and args and isinstance(value, (list, tuple)):
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {k: _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads `1e-3` as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is tuple and isinstance(value, list):
        return tuple(value)
    if isinstance(value, bool) and tp in (int, float):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return _check_type(tp, value, where)


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from a mapping, rejecting unknown keys (with the valid ones listed)."""
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}: " if where else ""
        raise ConfigError(
            f"{prefix}unknown key(s) {unknown} for {cls.__name__}; valid: {sorted(names)}"
        )
    types_ = _field_types(cls)
    kwargs = {
        k: _coerce(types_[k], v, f"{where}.{k}" if where else k) for k, v in data.items()
    }
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # a range check of __post_init__, or a bad combination
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{where or cls.__name__}: {err}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass as plain JSON/YAML-friendly values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def result_dict(cfg: Any) -> Any:
    """`to_dict` without the runtime fields (nor added fields at their default), through nested
    dataclasses, lists and dicts: what a cache key may depend on."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: result_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if _keyed(cfg, f)}
    if isinstance(cfg, dict):
        return {k: result_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [result_dict(v) for v in cfg]
    return json.loads(json.dumps(cfg, default=str))


def config_hash(*parts: Any) -> str:
    """A stable content hash of configs (dataclasses), tables (DataFrames) and plain values.

    Used as the cache key of a unit of work: change any input or setting and the key changes,
    so stale results are never reused and unchanged ones are never recomputed.
    """
    h = hashlib.sha256()
    for part in parts:
        if dataclasses.is_dataclass(part) and not isinstance(part, type):
            payload = json.dumps(result_dict(part), sort_keys=True).encode()
        elif isinstance(part, pd.DataFrame):
            payload = pd.util.hash_pandas_object(part, index=False).values.tobytes()
            payload += ",".join(map(str, part.columns)).encode()
        elif isinstance(part, (bytes, bytearray)):
            payload = bytes(part)
        else:
            payload = json.dumps(part, sort_keys=True, default=str).encode()
        h.update(len(payload).to_bytes(8, "little"))
        h.update(payload)
    return h.hexdigest()[:HASH_CHARS]


def _default_mode() -> int:
    """0666 less the process umask, as open() would create a file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_DEFAULT_MODE = _default_mode()


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Write via `write(tmp)` to a temp file beside `path`, then rename: a file that exists is whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix last: writers such as np.savez and cv2.imwrite choose by extension
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, _DEFAULT_MODE)  # mkstemp makes files 0600; results are ordinary files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_parquet(df: pd.DataFrame, path: Path | str) -> Path:
    return _atomic(Path(path), lambda tmp: df.to_parquet(tmp, index=False))


def atomic_write_text(text: str, path: Path | str) -> Path:
    return _atomic(Path(path), lambda tmp: tmp.write_text(text))


def atomic_write_json(obj: Any, path: Path | str) -> Path:
    return atomic_write_text(json.dumps(obj, indent=2, sort_keys=True, default=str), path)


def atomic_write_with(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Atomic write for any writer taking a path (np.savez, torch.save, cv2 ...)."""
    return _atomic(Path(path), write)
