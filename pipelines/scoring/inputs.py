"""What a user hands the detector, turned into one row per video with a pre-check status.

Paths (files or folders, searched recursively for video extensions) and base64-encoded file bytes
(what an HTTP client sends) both become rows of `filename`, `path`, `status`, `message`. A row whose
status is already set (`missing_file`, `not_a_video`, `not_allowed`) is never decoded; the others
(status missing) go to the face stage, which gives them `ok`, `no_face` or `decode_error`. Nothing is
dropped: every input is a row of the output.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from features.corpus.readers import VIDEO_EXTENSIONS

ALLOWED_ROOTS_ENV = "FAKESTACK_ALLOWED_ROOTS"  # os.pathsep-separated folders paths must lie in
PRECHECK_STATUSES = ("missing_file", "not_a_video", "not_allowed")
INPUT_COLUMNS = ["filename", "path", "status", "message"]
# container signatures, each a set of (offset, bytes) that must all hold: enough to tell a video
# file from text, images, audio or nothing (MP4/MOV, Matroska/WebM, AVI, MPEG-PS, FLV, ASF, MPEG-TS)
TS_PACKET = 188  # MPEG-TS: a sync byte every 188 bytes
MAGIC = (((4, b"ftyp"),), ((0, b"\x1a\x45\xdf\xa3"),), ((0, b"RIFF"), (8, b"AVI ")),
         ((0, b"\x00\x00\x01\xba"),), ((0, b"\x00\x00\x01\xb3"),), ((0, b"FLV"),),
         ((0, b"\x30\x26\xb2\x75"),), ((0, b"\x47"), (TS_PACKET, b"\x47")))
MAGIC_BYTES = TS_PACKET + 1


def _row(filename: str, path: str, status: str | None = None, message: str = "") -> dict:
    if status is not None and status not in PRECHECK_STATUSES:
        raise ValueError(f"unknown pre-check status {status!r}; valid: {PRECHECK_STATUSES}")
    return {"filename": filename, "path": path, "status": status, "message": message}


def is_video_name(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def looks_like_video(head: bytes) -> bool:
    """True when the first bytes carry a known video container signature."""
    return any(all(head[off:off + len(sig)] == sig for off, sig in parts) for parts in MAGIC)


def collect_paths(paths: Iterable[str]) -> pd.DataFrame:
    """One row per video: a file as given (checked), or every video file under a folder (sorted)."""
    rows = []
    for given in paths:
        p = Path(given).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and is_video_name(f))
            if not found:
                raise FileNotFoundError(f"{given}: a folder without video files "
                                        f"({', '.join(sorted(VIDEO_EXTENSIONS))})")
            rows += [check_file(f) for f in found]
        else:
            rows.append(check_file(p))
    return pd.DataFrame(rows, columns=INPUT_COLUMNS)


def check_file(path: Path, allowed_roots: list[Path] | None = None) -> dict:
    """The row of one file path, with a pre-check status where it cannot be judged."""
    name, shown = path.name, str(path)
    if allowed_roots is not None and not _inside(path, allowed_roots):
        return _row(name, shown, "not_allowed",
                    f"{shown}: outside the allowed roots ({ALLOWED_ROOTS_ENV}); not read")
    if not path.is_file():
        return _row(name, shown, "missing_file", f"{shown}: no such file")
    if path.stat().st_size == 0:
        return _row(name, shown, "not_a_video", f"{shown}: empty file")
    with path.open("rb") as fh:
        head = fh.read(MAGIC_BYTES)
    if not is_video_name(path) and not looks_like_video(head):
        return _row(name, shown, "not_a_video",
                    f"{shown}: neither a video extension ({', '.join(sorted(VIDEO_EXTENSIONS))}) nor a video container")
    return _row(name, str(path.resolve()))


def allowed_roots_from_env() -> list[Path] | None:
    """The folders that path requests may read (None: unrestricted, as for a local user)."""
    value = os.environ.get(ALLOWED_ROOTS_ENV)
    if not value:
        return None
    return [Path(v).expanduser().resolve() for v in value.split(os.pathsep) if v]


def _inside(path: Path, roots: list[Path]) -> bool:
    resolved = path.expanduser().resolve()
    return any(resolved == r or r in resolved.parents for r in roots)


def decode_video(data, name: str, folder: Path, index: int) -> dict:
    """Base64 file bytes -> a file in `folder` (a row for the detector); bad bytes get a status."""
    shown = f"<bytes of {name}>"
    try:
        raw = base64.b64decode(data, validate=True) if isinstance(data, str) else b""
    except (binascii.Error, ValueError) as err:
        return _row(name, "", "not_a_video", f"{shown}: not base64 ({err})")
    if not raw:
        return _row(name, "", "not_a_video", f"{shown}: empty")
    if not looks_like_video(raw[:MAGIC_BYTES]):
        return _row(name, "", "not_a_video", f"{shown}: no video container signature")
    suffix = Path(name).suffix if is_video_name(Path(name)) else ".mp4"
    path = folder / f"upload_{index:05d}{suffix}"
    path.write_bytes(raw)
    return _row(name, str(path))


def request_rows(frame: pd.DataFrame, folder: Path) -> tuple[pd.DataFrame, list[bool]]:
    """The rows of a pyfunc request: a `path` column, a `video` column of base64 bytes, or both
    (per row, a non-empty `video` wins; an optional `filename` names it). Returns the rows and, per
    row, whether it came as bytes (its `path` is a temporary file, not shown to the client)."""
    if "path" not in frame.columns and "video" not in frame.columns:
        raise KeyError(f"the request needs a `path` or a `video` (base64 bytes) column; got {list(frame.columns)}")
    roots = allowed_roots_from_env()
    rows, as_bytes = [], []
    for i, rec in enumerate(frame.to_dict("records")):
        data, given, name = rec.get("video"), rec.get("path"), rec.get("filename")
        if isinstance(data, str) and data:
            label = str(name) if isinstance(name, str) and name else f"video_{i:05d}"
            rows.append(decode_video(data, label, folder, i))
            as_bytes.append(True)
        elif isinstance(given, str) and given:
            rows.append(check_file(Path(given), roots))
            as_bytes.append(False)
        else:
            rows.append(_row(str(name) if isinstance(name, str) else f"row_{i}", "", "not_a_video",
                             f"row {i}: neither a path nor video bytes"))
            as_bytes.append(False)
    return pd.DataFrame(rows, columns=INPUT_COLUMNS), as_bytes
