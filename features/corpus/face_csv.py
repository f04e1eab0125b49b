"""Pre-extracted faces: one folder of face images with a CSV (`videoname,label,original`).

This is the form of the public Kaggle "deepfake-faces" set of DFDC crops (`metadata.csv` with
`videoname,original_width,original_height,label,original` and one image per video in a
subfolder, `faces_224/<stem>.jpg`). Each CSV row is a video: `label` REAL/FAKE, `original` the
REAL video a FAKE was made from (empty for a REAL one), an optional `split` column (else
`train`). The faces of `x.mp4` are the one image named `x.<image extension>` anywhere under the
folder, or the images (frames, in name order) of the one folder named `x` (a folder per video, as
preprocessed face sets such as DeepfakeBench's are laid out). The videos table is the one every
layout makes, with `media = face_images`: the face stage is skipped for these rows
(features.faces.images imports the crops instead).
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Sequence

import pandas as pd

from features.corpus.readers import (
    FAKE,
    LABEL_CODES,
    STATUS_MISSING,
    STATUS_OK,
    TRAIN_SPLIT,
    CorpusError,
    check_on_missing,
    check_roots,
    listing,
    part_names,
    raise_missing,
    videos_table,
)

CSV_NAME = "metadata.csv"
REQUIRED_COLUMNS = ("videoname", "label", "original")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MEDIA_FACES = "face_images"


def is_face_csv(root: Path) -> bool:
    """A folder in this layout: metadata.csv whose header names videoname, label and original."""
    path = Path(root) / CSV_NAME
    if not path.is_file():
        return False
    with path.open(encoding="utf-8", errors="replace") as fh:
        header = [c.strip() for c in fh.readline().split(",")]
    return all(c in header for c in REQUIRED_COLUMNS)


class _FaceSources:
    """Where each video's faces are under a root: an image named after the video, or a folder named
    after it holding one image per frame (in name order)."""

    def __init__(self, root: Path):
        self.root = root
        self.by_stem: dict[str, list[str]] = {}
        folders: set[Path] = set()
        for f in sorted(root.rglob("*")):
            if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
                self.by_stem.setdefault(f.stem, []).append(f.relative_to(root).as_posix())
                folders.add(f.parent)
        for d in sorted(folders - {root}):
            self.by_stem.setdefault(d.name, []).append(d.relative_to(root).as_posix())

    def find(self, stem: str, where: str) -> str | None:
        found = self.by_stem.get(stem, [])
        if len(found) > 1:
            raise CorpusError(f"{where}: two face sources for video {stem!r}: {listing(found)}")
        return found[0] if found else None


def _read_part(root: Path) -> list[dict]:
    path = root / CSV_NAME
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise CorpusError(f"{path}: cannot be read as CSV ({err})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise CorpusError(f"{path}: missing column(s) {missing}; expected {', '.join(REQUIRED_COLUMNS)}")
    if table.empty:
        raise CorpusError(f"{path}: lists no videos")
    dup = table["videoname"][table["videoname"].duplicated()].tolist()
    if dup:
        raise CorpusError(f"{path}: duplicate videoname(s) {listing(dup)}")
    images = _FaceSources(root)
    rows = []
    for line, rec in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        rows.append(_row(f"{path}, line {line}", rec, images))
    return rows


def _row(where: str, rec: dict, images: _FaceSources) -> dict:
    name = rec["videoname"].strip()
    if not name or PurePath(name).name != name:
        raise CorpusError(f"{where}: videoname {name!r} must be a plain file name")
    label = rec["label"].strip().upper()
    if label not in LABEL_CODES:
        raise CorpusError(f"{where}: label {rec['label']!r} is not one of {sorted(LABEL_CODES)}")
    original = rec["original"].strip() or None
    if LABEL_CODES[label] == FAKE and original is None:
        raise CorpusError(f"{where}: a FAKE video without an original (its group would be unknown)")
    if LABEL_CODES[label] != FAKE and original not in (None, name):
        raise CorpusError(f"{where}: a REAL video names an original ({original!r})")
    image = images.find(PurePath(name).stem, where)
    return {"video_id": name, "path": image or "", "label": LABEL_CODES[label],
            "original": original if original != name else None,
            "split": (rec.get("split") or TRAIN_SPLIT).strip(), "original_width": rec.get("original_width"),
            "status": STATUS_OK if image else STATUS_MISSING,
            "message": None if image else f"{where}: no image or image folder named {PurePath(name).stem} "
                                          "under the folder"}


def read_face_csv(roots: Sequence[str | Path], on_missing: str = "error", link_parts: bool = False) -> pd.DataFrame:
    """The videos table of face-image folders (media `face_images`), sorted by part, video_id."""
    check_on_missing(on_missing)
    paths = check_roots(list(roots))
    rows = []
    for given, folder, part in zip(roots, paths, part_names(paths)):
        rows += [{**r, "root": str(given), "part": part} for r in _read_part(folder)]
    videos = pd.DataFrame(rows)
    dup = videos["video_id"][videos["video_id"].duplicated()].tolist()
    if dup:
        raise CorpusError(f"video id(s) in two face folders: {listing(dup)}")
    raise_missing(rows, on_missing)
    return videos_table(videos, link_parts, media=MEDIA_FACES)
