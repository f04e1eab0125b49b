"""Read Celeb-DF (v1 and v2) folders into the videos table.

The published layout: `Celeb-real/id<X>_<NNNN>.mp4` (REAL: clip NNNN of celebrity X),
`YouTube-real/<NNNNN>.mp4` (REAL: other YouTube clips; absent from some v1 copies) and
`Celeb-synthesis/id<X>_id<Y>_<NNNN>.mp4` (FAKE: clip NNNN of X with celebrity Y's face), plus
`List_of_testing_videos.txt`, the only split Celeb-DF defines: lines `<label> <subdir>/<file>`
with label 1 = REAL, 0 = FAKE (the reverse of LABEL_CODES). Listed videos take split `test`,
every other one `train`.

Groups by identity: a fake shows X's body, background and motion and Y's face, so a model
trained on any video of X or of Y has seen part of it. Every video of one celebrity id carries
that id's links token, which joins a fake with its original (`original`) and with its face
donor; a YouTube-real clip names no identity and is its own group.

Why so strict: the test list's labels are inverted and its lines decide what is held out, so a
misread line would silently flip a label or train on a test video. A line that does not parse,
a label other than 0/1, a label contradicting the folder, a listed video that is absent (unless
on_missing="status": then a `missing_file` row) and a file name that does not parse in its
folder are each a CorpusError naming the file and, for the list, the line.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import pandas as pd

from features.corpus.folds import LINK_SEP, TEST_SPLIT
from features.corpus.options import CorpusOptions
from features.corpus.readers import (
    FAKE,
    REAL,
    STATUS_MISSING,
    STATUS_OK,
    TRAIN_SPLIT,
    VIDEO_EXTENSIONS,
    CorpusError,
    check_on_missing,
    check_roots,
    listing,
    part_names,
    raise_missing,
    videos_table,
)

REAL_DIR = "Celeb-real"
YOUTUBE_DIR = "YouTube-real"
SYNTH_DIR = "Celeb-synthesis"
FOLDERS = (REAL_DIR, YOUTUBE_DIR, SYNTH_DIR)
TEST_LIST_NAME = "List_of_testing_videos.txt"
LIST_LABELS = {"1": REAL, "0": FAKE}  # Celeb-DF's own convention: 1 = REAL
LIST_FIELDS = 2  # `<label> <subdir>/<file>`
ID_TOKEN = "celebdf:id:{}"  # links token of one celebrity id (prefixed: tokens are global)
NAME_PATTERNS = {  # file stems per folder; the extension must be one of VIDEO_EXTENSIONS
    REAL_DIR: re.compile(r"id(?P<x>\d+)_(?P<clip>\d+)"),
    YOUTUBE_DIR: re.compile(r"\d+"),
    SYNTH_DIR: re.compile(r"id(?P<x>\d+)_id(?P<y>\d+)_(?P<clip>\d+)"),
}
EXPECTED_NAMES = {REAL_DIR: "id<X>_<NNNN>.mp4", YOUTUBE_DIR: "<NNNNN>.mp4",
                  SYNTH_DIR: "id<X>_id<Y>_<NNNN>.mp4"}
LABEL_NAMES = {REAL: "REAL", FAKE: "FAKE"}


def is_celebdf(root: str | Path) -> bool:
    """A folder in this layout: it has Celeb-real/ or Celeb-synthesis/."""
    return any((Path(root) / d).is_dir() for d in (REAL_DIR, SYNTH_DIR))


def _describe(where: str, folder: str, file: str) -> dict[str, Any]:
    """label, original, links and method of `<folder>/<file>`, from its name alone (so a listed
    video that is absent still gets its group)."""
    name = PurePosixPath(file)
    match = NAME_PATTERNS[folder].fullmatch(name.stem) if name.suffix.lower() in VIDEO_EXTENSIONS else None
    if match is None:
        raise CorpusError(f"{where}: file name {file!r} does not parse in {folder}/ "
                          f"(expected {EXPECTED_NAMES[folder]})")
    row: dict[str, Any] = {"label": REAL, "original": None, "links": None, "method": folder}
    if folder == REAL_DIR:
        row["links"] = ID_TOKEN.format(match["x"])
    elif folder == SYNTH_DIR:
        ids = dict.fromkeys([match["x"], match["y"]])  # one token when X == Y
        row.update(label=FAKE, original=f"{REAL_DIR}/id{match['x']}_{match['clip']}{name.suffix}",
                   links=LINK_SEP.join(ID_TOKEN.format(i) for i in ids))
    return row


def _scan(root: Path) -> dict[str, dict[str, Any]]:
    """video_id -> row of every video file on disk (top level of each folder; other files, such as
    thumbnails, are not videos and are skipped)."""
    rows: dict[str, dict[str, Any]] = {}
    for folder in FOLDERS:
        if not (root / folder).is_dir():
            continue
        for file in sorted((root / folder).iterdir()):
            if file.is_file() and file.suffix.lower() in VIDEO_EXTENSIONS:
                vid = f"{folder}/{file.name}"
                rows[vid] = {"video_id": vid, "path": vid, **_describe(str(file), folder, file.name),
                             "split": TRAIN_SPLIT, "status": STATUS_OK, "message": None}
    return rows


def _read_test_list(path: Path) -> dict[str, tuple[str, int]]:
    """`<subdir>/<file>` -> (where, label code) of each line of the testing list; blank lines skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path}: not UTF-8 text ({err})") from None
    entries: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        fields = line.split()
        if len(fields) != LIST_FIELDS:
            raise CorpusError(f"{where}: {line.strip()!r} does not parse; "
                              "expected '<label> <subdir>/<file>'")
        label, name = fields
        if label not in LIST_LABELS:
            raise CorpusError(f"{where}: label {label!r} is not 0 (FAKE) or 1 (REAL)")
        if len(name.split("/")) != LIST_FIELDS or name.split("/")[0] not in FOLDERS:
            raise CorpusError(f"{where}: {name!r} is not <subdir>/<file> "
                              f"with subdir one of {', '.join(FOLDERS)}")
        if name in entries:
            raise CorpusError(f"{where}: {name!r} is listed twice (first at {entries[name][0]})")
        entries[name] = (where, LIST_LABELS[label])
    return entries


def _apply_test_list(root: Path, rows: dict[str, dict[str, Any]]) -> None:
    """Mark listed videos `test`; add a `missing_file` row for each listed one that is absent."""
    path = root / TEST_LIST_NAME
    if not path.is_file():
        return
    for name, (where, label) in _read_test_list(path).items():
        folder, file = name.split("/")
        described = _describe(where, folder, file)
        if described["label"] != label:
            raise CorpusError(f"{where}: {name!r} is listed as {LABEL_NAMES[label]} but {folder}/ holds "
                              f"{LABEL_NAMES[described['label']]} videos (list labels: 1 = REAL, 0 = FAKE)")
        if name in rows:
            rows[name]["split"] = TEST_SPLIT
        else:
            rows[name] = {"video_id": name, "path": name, **described, "split": TEST_SPLIT,
                          "status": STATUS_MISSING,
                          "message": f"{where}: listed video not found: {root / name}"}


def _read_part(root: Path) -> list[dict[str, Any]]:
    if not any((root / d).is_dir() for d in FOLDERS):
        raise CorpusError(f"{root}: not a Celeb-DF folder "
                          f"(has none of {', '.join(d + '/' for d in FOLDERS)})")
    rows = _scan(root)
    _apply_test_list(root, rows)
    if not rows:
        raise CorpusError(f"{root}: no videos in {', '.join(d + '/' for d in FOLDERS)}")
    return list(rows.values())


def read_celebdf(roots: Sequence[str | Path] | str | Path, on_missing: str = "error",
                 link_parts: bool = False, options: CorpusOptions | None = None) -> pd.DataFrame:
    """The videos table of Celeb-DF folders, sorted by part, video_id (`options`: none apply).

    video_id and path are `<subdir>/<file>` (file names repeat between folders); method is the
    subfolder; compression is missing.
    """
    check_on_missing(on_missing)
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    paths = check_roots(roots)
    rows: list[dict[str, Any]] = []
    for given, folder, part in zip(roots, paths, part_names(paths)):
        rows += [{**r, "root": str(given), "part": part} for r in _read_part(folder)]
    ids = pd.Series([r["video_id"] for r in rows])
    if ids.duplicated().any():
        twice = sorted(set(ids[ids.duplicated()]))
        raise CorpusError(f"video id(s) in two Celeb-DF folders: {listing(twice)} "
                          "(read one copy of Celeb-DF per run)")
    raise_missing(rows, on_missing)
    return videos_table(pd.DataFrame(rows), link_parts)
