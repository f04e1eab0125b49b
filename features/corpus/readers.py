"""Read DFDC-layout corpora (one or many folders) into the videos table.

A corpus folder holds video files plus a `metadata.json` mapping each file name to
`{"label": "FAKE"|"REAL", "split": ..., "original": ...}` (DFDC adds other keys; they are allowed).
A folder without metadata.json is read as unlabelled test videos.

Why so strict: every later stage trusts this table. A typo'd label, a fake pointing at another
fake, or a file name that walks out of its folder would silently corrupt the groups that keep
folds leak-free, so each is a `CorpusError` naming the metadata file and the entry. The one
tolerated gap is a missing video file, and only when the caller asks (`on_missing="status"`):
the row is kept with an explicit `missing_file` status so every listed video stays accounted for.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Sequence

import pandas as pd

from features.common import ConfigError
from features.corpus.folds import TEST_SPLIT, connected_groups

METADATA_NAME = "metadata.json"
TEST_LABELS_NAME = "test_labels.csv"  # the embedded corpus's answer file: filename,label (0/1)
DFDC_TEST_LABELS_NAME = "labels.csv"  # the DFDC full release's test/labels.csv, in the same form
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".ts", ".3gp"})
LABEL_CODES = {"REAL": 0, "FAKE": 1}
FAKE = LABEL_CODES["FAKE"]
REAL = LABEL_CODES["REAL"]
TRAIN_SPLIT = "train"  # split of a labelled entry that names none (DFDC train metadata)
FALLBACK_PART = "corpus"
STATUS_OK = "ok"
STATUS_MISSING = "missing_file"
ON_MISSING_CHOICES = ("error", "status")
MAX_LISTED = 5  # entries quoted in one error message before "... and N more"
STRING_COLUMNS = ("video_id", "path", "root", "original", "split", "part", "status", "message", "media",
                  "method", "compression", "links")
# media: `video` files or pre-extracted `face_images`; method and compression where a corpus names
# them (FF++), else missing; links: extra group edges (features.corpus.folds.connected_groups)
VIDEO_COLUMNS = ("video_id", "path", "root", "label", "original", "split", "part", "group",
                 "status", "message", "media", "method", "compression", "links", "original_width")
# original_width: the face's width in pixels before a face set resized it (the Kaggle "deepfake-faces"
# metadata.csv gives it), else missing: benchmarks.real reads the learners' errors by face size
MEDIA_VIDEO = "video"


class CorpusError(ValueError):
    """A corpus folder or its metadata.json that cannot be read as the videos table."""


def listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return shown + (f", ... and {more} more" if more > 0 else "")


def _load_metadata(path: Path) -> dict[str, Any]:
    """Parse metadata.json; a duplicate key is an error (json.loads would keep the last one)."""

    def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        dup = sorted(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        if dup:
            raise CorpusError(f"{path}: duplicate key(s) {listing(dup)}")
        return dict(pairs)

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path}: not UTF-8 text ({err})") from None
    try:
        data = json.loads(text, object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as err:
        raise CorpusError(
            f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None
    if not isinstance(data, dict):
        raise CorpusError(
            f"{path}: top level must be an object mapping file name -> entry, "
            f"got a JSON {type(data).__name__}"
        )
    if not data:
        raise CorpusError(f"{path}: lists no videos")
    return data


def _check_name(where: str, name: str) -> None:
    """A file name must stay inside its corpus folder.

    The check is lexical (no absolute path, drive or `..` component) rather than by resolving
    symlinks, because annexed/DVC corpora legitimately symlink their videos into an object store.
    """
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if (
        not name.strip()
        or posix.is_absolute()
        or windows.drive
        or name.startswith(("/", "\\"))
        or ".." in posix.parts
        or ".." in windows.parts
    ):
        raise CorpusError(
            f"{where}: file name escapes the corpus folder "
            "(must be a relative path without '..')"
        )


def _parse_entry(where: str, name: str, entry: Any) -> dict[str, Any]:
    """Validate one metadata entry -> label code, original, split. Unknown keys are allowed."""
    if not isinstance(entry, dict):
        raise CorpusError(f"{where}: entry must be an object, got {type(entry).__name__}")
    raw = entry.get("label")
    if raw is None:
        label = pd.NA
    elif isinstance(raw, str) and raw in LABEL_CODES:
        label = LABEL_CODES[raw]
    else:
        raise CorpusError(f"{where}: label {raw!r} is not one of {sorted(LABEL_CODES)}")
    original = entry.get("original")
    if original is not None and (not isinstance(original, str) or not original.strip()):
        raise CorpusError(f"{where}: original {original!r} must be a file name or null")
    if original == name:
        raise CorpusError(f"{where}: names itself as its original")
    if original is not None and label is not pd.NA and label == REAL:
        # DFDC reals have original null; a REAL with a source suggests swapped labels
        raise CorpusError(f"{where}: a REAL video names an original ({original!r})")
    split = entry.get("split")
    if split is None:
        split = TEST_SPLIT if label is pd.NA else TRAIN_SPLIT
    elif not isinstance(split, str) or not split.strip():
        raise CorpusError(f"{where}: split {split!r} must be a non-empty string")
    return {"label": label, "original": original, "split": split}


def _read_metadata_part(meta: Path) -> list[dict[str, Any]]:
    rows = []
    for name, entry in _load_metadata(meta).items():
        where = f"{meta}: entry {name!r}"
        _check_name(where, name)
        rows.append({"video_id": name, "path": name, "source": str(meta),
                     **_parse_entry(where, name, entry)})
    return rows


def _read_plain_part(root: Path) -> list[dict[str, Any]]:
    """A folder of videos without metadata: unlabelled test videos (top level only)."""
    names = sorted(p.name for p in root.iterdir()
                   if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not names:
        exts = ", ".join(sorted(VIDEO_EXTENSIONS))
        raise CorpusError(f"{root}: has no {METADATA_NAME} and no video files ({exts})")
    return [{"video_id": n, "path": n, "source": str(root), "label": pd.NA, "original": None,
             "split": TEST_SPLIT} for n in names]


def check_roots(roots: Sequence[str | Path]) -> list[Path]:
    """Each root must be an existing folder, given once (else every id would be 'in two folders')."""
    if not roots:
        raise CorpusError("no corpus folder given")
    paths = [Path(r) for r in roots]
    for path in paths:
        if not path.is_dir():
            raise CorpusError(f"{path}: corpus folder does not exist or is not a folder")
    resolved = [p.resolve() for p in paths]
    twice = sorted({str(p) for p, r in zip(paths, resolved) if resolved.count(r) > 1})
    if twice:
        raise CorpusError(f"corpus folder given twice: {listing(twice)}")
    return paths


def part_names(roots: Sequence[Path]) -> list[str]:
    """Folder names, made unique with a numeric suffix when two folders share one."""
    names: list[str] = []
    for root in roots:
        base = root.resolve().name or FALLBACK_PART  # only the filesystem root has no name
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def _check_across_parts(rows: list[dict[str, Any]]) -> None:
    """Checks that need every part: unique ids, and no original that is itself a fake."""
    seen: dict[str, str] = {}
    for row in rows:
        if row["video_id"] in seen:
            raise CorpusError(f"video id {row['video_id']!r} appears in two corpus folders: "
                              f"{seen[row['video_id']]} and {row['source']}")
        seen[row["video_id"]] = row["source"]
    fakes = {r["video_id"] for r in rows if r["label"] is not pd.NA and r["label"] == FAKE}
    for row in rows:
        if row["original"] in fakes:
            raise CorpusError(f"{row['source']}: entry {row['video_id']!r}: original "
                              f"{row['original']!r} is itself a FAKE")


def _mark_missing(rows: list[dict[str, Any]], on_missing: str) -> None:
    """Set status/message per row; raise on missing files unless asked to keep them."""
    missing = []
    for row in rows:
        file = row["folder"] / row["path"]
        ok = file.is_file()
        row["status"] = STATUS_OK if ok else STATUS_MISSING
        row["message"] = None if ok else f"video file not found: {file}"
        if not ok:
            missing.append(f"{row['source']}: entry {row['video_id']!r} ({file})")
    if missing and on_missing == "error":
        raise CorpusError(
            f"{len(missing)} video file(s) not found: {listing(missing)}; "
            "pass on_missing='status' to keep them with status 'missing_file'"
        )


def check_on_missing(on_missing: str) -> None:
    if on_missing not in ON_MISSING_CHOICES:
        raise ConfigError(f"on_missing={on_missing!r}; valid: {', '.join(ON_MISSING_CHOICES)}")


def raise_missing(rows: list[dict[str, Any]], on_missing: str) -> None:
    """A reader's rows with status missing_file are an error unless the caller asked to keep them
    (every listed video stays accounted for, with its status)."""
    absent = [r["message"] for r in rows if r["status"] == STATUS_MISSING]
    if absent and on_missing == "error":
        raise CorpusError(f"{len(absent)} video file(s) not found: {'; '.join(absent[:MAX_LISTED])}"
                          f"{'; ...' if len(absent) > MAX_LISTED else ''}; "
                          "pass on_missing='status' to keep them with status 'missing_file'")


def read_corpora(
    roots: Sequence[str | Path] | str | Path,
    on_missing: str = "error",
    link_parts: bool = False,
) -> pd.DataFrame:
    """Read corpus folders into one videos table (VIDEO_COLUMNS), rows sorted by part, video_id.

    `group` joins each fake with its original (even one absent from the corpus) and, with
    `link_parts`, every video of a folder; see `features.corpus.folds.connected_groups`.
    """
    check_on_missing(on_missing)
    if isinstance(roots, (str, Path)):
        roots = [roots]
    paths = check_roots(roots)

    rows: list[dict[str, Any]] = []
    for given, folder, part in zip(roots, paths, part_names(paths)):
        meta = folder / METADATA_NAME
        found = _read_metadata_part(meta) if meta.exists() else _read_plain_part(folder)
        rows += [{**row, "root": str(given), "part": part, "folder": folder} for row in found]
    _check_across_parts(rows)
    _mark_missing(rows, on_missing)

    return videos_table(pd.DataFrame(rows).drop(columns=["source", "folder"]), link_parts)


def videos_table(rows: pd.DataFrame, link_parts: bool, media: str = MEDIA_VIDEO) -> pd.DataFrame:
    """Every layout's last step: rows (VIDEO_COLUMNS but `group`; absent optional ones become
    missing, `media` defaults to `media`) -> the videos table: its dtypes, sorted by part and
    video_id, with the groups of connected_groups."""
    videos = rows.copy()
    for col in ("method", "compression", "links", "status", "message", "original_width"):
        if col not in videos:
            videos[col] = pd.NA
    videos["original_width"] = pd.to_numeric(videos["original_width"], errors="coerce").astype("float64")
    videos["media"] = videos["media"].fillna(media) if "media" in videos else media
    videos["label"] = videos["label"].astype("Int8")
    for col in STRING_COLUMNS:
        videos[col] = videos[col].astype("string")
    videos = videos.sort_values(["part", "video_id"], kind="stable").reset_index(drop=True)
    videos["group"] = connected_groups(videos, link_parts=link_parts)
    return videos[list(VIDEO_COLUMNS)]


def read_test_labels(root: str | Path) -> pd.DataFrame:
    """The answer file of a corpus's test split (video_id, label Int8); empty when there is none.
    `test_labels.csv` (the embedded corpus) or `labels.csv` (DFDC's test folder), filename,label
    with 1 = FAKE.

    Kept apart from metadata.json (as in DFDC) so test labels cannot leak into training.
    """
    found = [Path(root) / name for name in (TEST_LABELS_NAME, DFDC_TEST_LABELS_NAME) if (Path(root) / name).exists()]
    if len(found) > 1:
        raise CorpusError(f"{root}: both {TEST_LABELS_NAME} and {DFDC_TEST_LABELS_NAME}; keep one answer file")
    if not found:
        return pd.DataFrame({"video_id": pd.Series(dtype="string"), "label": pd.Series(dtype="Int8")})
    return read_labels_file(found[0])


def read_labels_file(path: str | Path) -> pd.DataFrame:
    """A `filename,label` CSV (1 = FAKE) as (video_id, label Int8); a bad one names the file."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"filename": "string"})
    except (FileNotFoundError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CorpusError(f"{path}: cannot be read as CSV ({err})") from None
    missing = sorted({"filename", "label"} - set(table.columns))
    if missing:
        raise CorpusError(f"{path}: missing column(s) {missing}; expected filename,label")
    bad = table.loc[~table["label"].isin(list(LABEL_CODES.values())), "filename"]
    if len(bad):
        raise CorpusError(f"{path}: label must be 0 or 1; bad rows: {listing(list(bad.astype(str)))}")
    dup = table.loc[table["filename"].duplicated(), "filename"]
    if len(dup):
        raise CorpusError(f"{path}: duplicate filename(s) {listing(dup.astype(str).tolist())}")
    return pd.DataFrame({"video_id": table["filename"].astype("string"),
                         "label": table["label"].astype("Int8")})
