"""What a user hands the detector, turned into one row per input with a pre-check status.

Paths (files or folders, searched recursively for video extensions) and base64-encoded file bytes
(what an HTTP client sends) both become rows of `filename`, `path`, `status`, `message`. A row whose
status is already set (see PRECHECK_STATUSES) is never decoded; the others (status missing) go to
the face stage, which gives them `ok`, `no_face` or `decode_error`. Nothing is dropped and nothing
raises for one input: a name the file system refuses (a NUL byte, too long), a file or folder that
cannot be read, a folder without videos, a dangling link are each that input's row, so one bad input
never sinks the others.

Two callers, two trust levels. `collect_paths` serves the local user of `predict.py`, who may read
what their account can: messages name the path and say why. `request_rows` serves HTTP clients of
the model server: a path is read only when it is absolute and lies inside FAKESTACK_ALLOWED_ROOTS
(none configured: no path is read at all), and a path refused, missing or unreadable gets the one
status `not_allowed` with one message, so a client cannot learn whether a file exists outside what
it may read. Served rows never show a server path the client did not send.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from features.corpus.readers import VIDEO_EXTENSIONS

logger = logging.getLogger(__name__)

ALLOWED_ROOTS_ENV = "FAKESTACK_ALLOWED_ROOTS"  # os.pathsep-separated folders served paths must lie in
# statuses a row can get before decoding: the file is absent (local), not a video, refused (served:
# also missing or unreadable), unreadable (local), or left out by a request limit or the deadline
PRECHECK_STATUSES = ("missing_file", "not_a_video", "not_allowed", "unreadable", "over_limit", "timed_out")
INPUT_COLUMNS = ["filename", "path", "status", "message"]
# container signatures, each a set of (offset, bytes) that must all hold: enough to tell a video
# file from text, images, audio or nothing (MP4/MOV, Matroska/WebM, AVI, MPEG-PS, FLV, ASF, MPEG-TS)
TS_PACKET = 188  # MPEG-TS: a sync byte every 188 bytes
MAGIC = (((4, b"ftyp"),), ((0, b"\x1a\x45\xdf\xa3"),), ((0, b"RIFF"), (8, b"AVI ")),
         ((0, b"\x00\x00\x01\xba"),), ((0, b"\x00\x00\x01\xb3"),), ((0, b"FLV"),),
         ((0, b"\x30\x26\xb2\x75"),), ((0, b"\x47"), (TS_PACKET, b"\x47")))
MAGIC_BYTES = TS_PACKET + 1
SHOWN_CHARS = 200  # a client's name or path is echoed at most this long (control characters escaped)
UPLOAD_PREFIX = "fakestack-upload-"  # temporary upload folders: UPLOAD_PREFIX + "<pid>-<random>"
REFUSED = ("not readable here: path requests must be absolute and lie inside the folders the server "
           f"allows ({ALLOWED_ROOTS_ENV}), and the file must exist and be readable")
PATHS_OFF = f"path requests are off on this server (no {ALLOWED_ROOTS_ENV}); send the video bytes instead"
FOLDER_WITHOUT_VIDEOS = f"a folder without video files ({', '.join(sorted(VIDEO_EXTENSIONS))})"


def _row(filename: str, path: str, status: str | None = None, message: str = "") -> dict:
    if status is not None and status not in PRECHECK_STATUSES:
        raise ValueError(f"unknown pre-check status {status!r}; valid: {PRECHECK_STATUSES}")
    return {"filename": filename, "path": path, "status": status, "message": message}


def shown(text: str) -> str:
    """A client- or file-system-supplied name as it may appear in a message or a filename cell:
    control characters escaped, cut at SHOWN_CHARS."""
    safe = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return safe if len(safe) <= SHOWN_CHARS else safe[:SHOWN_CHARS] + "..."


def is_video_name(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def looks_like_video(head: bytes) -> bool:
    """True when the first bytes carry a known video container signature."""
    return any(all(head[off:off + len(sig)] == sig for off, sig in parts) for parts in MAGIC)


def _reason(err: BaseException) -> str:
    """Why the file system refused, without the path it names (OSError's str repeats it)."""
    return getattr(err, "strerror", None) or type(err).__name__ if isinstance(err, OSError) else str(err)


def collect_paths(paths: Iterable[str]) -> pd.DataFrame:
    """One row per input of a local user: a file as given (checked), every video file under a
    folder (sorted; a dangling link or unreadable subfolder is a row too), or one row for a folder
    without videos or a path that cannot be read."""
    rows = []
    for given in paths:
        try:
            p = Path(given).expanduser()
            is_dir = p.is_dir()
        except (OSError, ValueError) as err:  # a NUL byte, an over-long name
            rows.append(_row(shown(Path(str(given)).name), shown(given), "unreadable",
                             f"{shown(given)}: not a usable path ({_reason(err)})"))
            continue
        rows += _scan(p) if is_dir else [check_file(p)]
    return pd.DataFrame(rows, columns=INPUT_COLUMNS)


def _scan(folder: Path) -> list[dict]:
    """Every video-named entry under `folder` (links not followed into folders, as os.walk does)."""
    rows: list[dict] = []

    def unreadable(err: OSError) -> None:
        where = Path(err.filename) if err.filename else folder
        rows.append(_row(where.name, str(where), "unreadable", f"{where}: folder not readable ({_reason(err)})"))

    found = []
    for dirpath, _, files in os.walk(folder, onerror=unreadable, followlinks=False):
        found += [Path(dirpath) / f for f in files if is_video_name(Path(f))]
    rows += [check_file(f) for f in sorted(found)]
    if not rows:
        rows.append(_row(folder.name, str(folder), "not_a_video", f"{folder}: {FOLDER_WITHOUT_VIDEOS}"))
    return rows


def check_file(path: Path, allowed_roots: list[Path] | None = None) -> dict:
    """The row of one local file path, with a pre-check status where it cannot be judged (an
    OSError or ValueError of the file system is the row's `unreadable` status, never raised).
    `allowed_roots` (served paths) is request_rows' business: see `check_served_path`."""
    if allowed_roots is not None:
        return check_served_path(str(path), allowed_roots)
    name, text = shown(path.name), shown(str(path))
    try:
        if path.is_dir():
            return _row(name, text, "not_a_video", f"{text}: {FOLDER_WITHOUT_VIDEOS}" if not _has_video(path)
                        else f"{text}: a folder (name the folder itself to score its videos)")
        if not path.is_file():
            return _row(name, text, "missing_file", f"{text}: no such file (or a broken link)")
        if path.stat().st_size == 0:
            return _row(name, text, "not_a_video", f"{text}: empty file")
        with path.open("rb") as fh:
            head = fh.read(MAGIC_BYTES)
        resolved = str(path.resolve())
    except (OSError, ValueError) as err:
        return _row(name, text, "unreadable", f"{text}: not readable ({_reason(err)})")
    if not is_video_name(path) and not looks_like_video(head):
        return _row(name, text, "not_a_video",
                    f"{text}: neither a video extension ({', '.join(sorted(VIDEO_EXTENSIONS))}) nor a video container")
    return _row(name, resolved)


def _has_video(folder: Path) -> bool:
    return any(is_video_name(Path(f)) for _, _, files in os.walk(folder) for f in files)


def check_served_path(given: str, roots: list[Path] | None) -> dict:
    """The row of a path an HTTP client named. Read only when absolute and inside `roots`; refused,
    missing and unreadable paths all get `not_allowed` and one message (nothing about existence
    leaks). The row's `path` is the resolved file (for the detector); request_rows shows the
    client its own string instead."""
    name = shown(Path(given).name if "\x00" not in given else given)
    if not roots:
        return _row(name, shown(given), "not_allowed", PATHS_OFF)
    refused = _row(name, shown(given), "not_allowed", f"{shown(given)}: {REFUSED}")
    try:
        p = Path(given)
        if not p.is_absolute():
            return refused
        resolved = p.resolve()  # symlinks and ../ resolved before the roots are compared
        if not any(resolved == r or r in resolved.parents for r in roots) or not resolved.is_file():
            return refused
        size = resolved.stat().st_size
        with resolved.open("rb") as fh:
            head = fh.read(MAGIC_BYTES)
    except (OSError, ValueError, RuntimeError):  # RuntimeError: a symlink loop in resolve()
        return refused
    if size == 0 or (not is_video_name(resolved) and not looks_like_video(head)):
        return _row(name, shown(given), "not_a_video", f"{shown(given)}: not a video file")
    return _row(name, str(resolved))


def allowed_roots_from_env() -> list[Path] | None:
    """The folders that served path requests may read (None: none configured, so none)."""
    value = os.environ.get(ALLOWED_ROOTS_ENV)
    if not value:
        return None
    roots = []
    for v in value.split(os.pathsep):
        if v:
            root = Path(v).expanduser()
            if not root.is_absolute():
                raise ValueError(f"{ALLOWED_ROOTS_ENV}: {v!r} is not an absolute folder")
            roots.append(root.resolve())
    return roots or None


def decode_video(data, name: str, folder: Path, index: int) -> dict:
    """Base64 file bytes -> a file in `folder` (a row for the detector); bad bytes get a status."""
    label = f"<bytes of {name}>"
    try:
        raw = base64.b64decode(data, validate=True) if isinstance(data, str) else b""
    except (binascii.Error, ValueError):
        return _row(name, "", "not_a_video", f"{label}: not base64")
    if not raw:
        return _row(name, "", "not_a_video", f"{label}: empty")
    if not looks_like_video(raw[:MAGIC_BYTES]):
        return _row(name, "", "not_a_video", f"{label}: no video container signature")
    suffix = Path(name).suffix.lower() if is_video_name(Path(name)) else ".mp4"
    path = folder / f"upload_{index:05d}{suffix}"
    try:
        path.write_bytes(raw)
    except OSError as err:
        logger.error("upload %d: could not be written to the temporary folder (%s)", index, _reason(err))
        return _row(name, "", "unreadable", f"{label}: the server could not store it")
    return _row(name, str(path))


def request_rows(frame: pd.DataFrame, folder: Path, roots: list[Path] | None = None
                 ) -> tuple[pd.DataFrame, list[str]]:
    """The rows of a pyfunc request: a `path` column, a `video` column of base64 bytes, or both
    (per row, a non-empty `video` wins; an optional `filename` names it). Returns the rows and, per
    row, the `path` the client is shown (its own string; "" for bytes, whose temporary file means
    nothing to it)."""
    if "path" not in frame.columns and "video" not in frame.columns:
        raise KeyError(f"the request needs a `path` or a `video` (base64 bytes) column; got "
                       f"{[shown(c) for c in frame.columns][:10]}")
    rows, show = [], []
    for i, rec in enumerate(frame.to_dict("records")):
        data, given, name = rec.get("video"), rec.get("path"), rec.get("filename")
        if isinstance(data, str) and data:
            label = shown(name) if isinstance(name, str) and name else f"video_{i:05d}"
            rows.append(decode_video(data, label, folder, i))
            show.append("")
        elif isinstance(given, str) and given:
            rows.append(check_served_path(given, roots))
            show.append(shown(given))
        else:
            rows.append(_row(shown(name) if isinstance(name, str) else f"row_{i}", "", "not_a_video",
                             f"row {i}: neither a path nor video bytes"))
            show.append("")
    return pd.DataFrame(rows, columns=INPUT_COLUMNS), show
