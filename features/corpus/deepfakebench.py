"""DeepfakeBench's preprocessed face sets: a dataset JSON listing each video's frame images.

DeepfakeBench distributes faces already cropped, one folder of frame images per video, described
by a JSON per dataset: `{dataset: {label_name: {split: {[compression:] {video: {"label": ..., "frames":
[paths]}}}}}}` (label names such as `FF-real`, `FF-DF`, `CelebDFv1_fake`; FF++ entries carry a
compression level, Celeb-DF's do not). Every `*.json` in the folder is read.

- video_id `<label_name>/<video>` (with `<dataset>/` in front when a folder holds several datasets),
  label REAL when the label name says `real`, else FAKE; `method` the label name; `compression` the
  level read (`options.compression`, or the only one there); split the key it sits under. A video
  listed under several splits (DeepfakeBench lists DeepFakeDetection's in all three) keeps the first
  of train, val, test: a copy in another split would be scored by models trained on it.
- `path` is the folder of its frames (the first frame's folder; frames are imported in name order,
  `n_frames` of them). Frame paths are tried as given, then under the folder, then from the dataset's
  name onwards under the folder (the JSON's paths are usually the preprocessing machine's).
- The JSON names no originals, so groups come from the video names, which these datasets build from
  the identities involved: FF++ `A_B` / `A`, DeepFakeDetection `AA_BB__scene__x` / `AA__scene`,
  Celeb-DF `idX_idY_N` / `idX_N` (YouTube-real `NNNNN` alone), DeeperForensics `A_Mnnn`. A name
  that parses as none of them is an error: its group, and so the leak-free folds, would be unknown.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePath
from typing import Any, Sequence

import pandas as pd

from features.corpus.face_csv import MEDIA_FACES
from features.corpus.folds import LINK_SEP
from features.corpus.options import CorpusOptions
from features.corpus.readers import (
    FAKE,
    METADATA_NAME,
    REAL,
    STATUS_MISSING,
    STATUS_OK,
    CorpusError,
    check_on_missing,
    check_roots,
    listing,
    part_names,
    raise_missing,
    videos_table,
)

SPLIT_ORDER = ("train", "val", "test")  # a video under several splits keeps the first of these
SNIFF_BYTES = 1 << 16  # a JSON is a DeepfakeBench dataset file when "frames" shows up this early
IDENTITY_PATTERNS = (  # name -> the identities it involves (regex groups); see the module docstring
    re.compile(r"^(\d{3})_(\d{3})$"), re.compile(r"^(\d{3})$"),
    re.compile(r"^(\d{2})_(\d{2})__"), re.compile(r"^(\d{2})__"),
    re.compile(r"^(id\d+)_(id\d+)_\d+$"), re.compile(r"^(id\d+)_\d+$"),
    re.compile(r"^(\d{3})_([A-Z]\d{3})$"), re.compile(r"^(\d{5})$"),
)


def _dataset_files(root: Path) -> list[Path]:
    found = []
    for f in sorted(root.glob("*.json")):
        if f.name == METADATA_NAME:  # a DFDC folder's metadata, whatever keys it carries
            continue
        with f.open(encoding="utf-8", errors="replace") as fh:
            head = fh.read(SNIFF_BYTES)
        if head.lstrip().startswith("{") and '"frames"' in head:
            found.append(f)
    return found


def is_deepfakebench(root: Path) -> bool:
    return bool(_dataset_files(Path(root)))


def _identities(name: str) -> list[str]:
    for pattern in IDENTITY_PATTERNS:
        m = pattern.match(name)
        if m:
            return list(m.groups())
    return []


def _entries(node: dict, compression: str, where: str) -> tuple[str | None, dict]:
    """(compression read, {video: entry}) of one split's node, with or without a compression level."""
    if all(isinstance(v, dict) and "frames" in v for v in node.values()):
        return None, node
    levels = sorted(node)
    if compression in node:
        return compression, node[compression]
    if len(levels) == 1:
        return levels[0], node[levels[0]]
    raise CorpusError(f"{where}: compression {compression!r} not listed; found {', '.join(levels)}")


def _frames_folder(frames: list, root: Path, dataset: str) -> Path | None:
    """The folder of a video's frames on this machine (see the module docstring), or None."""
    if not frames:
        return None
    first = PurePath(str(frames[0]))
    candidates = [Path(first), root / first]
    if dataset in first.parts:
        candidates.append(root / PurePath(*first.parts[first.parts.index(dataset):]))
    return next((c.parent for c in candidates if c.is_file()), None)


def _video_row(root: Path, file: Path, keys: tuple[str, str, str], name: str, entry: Any,
               compression: str | None, prefix: str) -> dict:
    dataset, label_name, split = keys
    where = f"{file}: {dataset}/{label_name}/{split}/{name}"
    if not isinstance(entry, dict) or not isinstance(entry.get("frames"), list):
        raise CorpusError(f"{where}: an entry must be an object with a list of frames")
    ids = _identities(name)
    if not ids:
        raise CorpusError(f"{where}: the video name does not say whose faces it shows (FF++, DFD, "
                          "Celeb-DF or DeeperForensics names), so its group would be unknown")
    folder = _frames_folder(entry["frames"], root, dataset)
    if folder is not None:  # the table's paths are relative to the root where they can be
        inside = folder.resolve().is_relative_to(root.resolve())
        folder = folder.resolve().relative_to(root.resolve()) if inside else folder.resolve()
    label = REAL if "real" in str(entry.get("label", label_name)).lower() else FAKE
    return {"video_id": f"{prefix}{label_name}/{name}", "path": folder.as_posix() if folder else "",
            "label": label, "original": None, "split": split, "method": label_name,
            "compression": compression, "links": LINK_SEP.join(f"{dataset}:{i}" for i in ids),
            "status": STATUS_OK if folder else STATUS_MISSING,
            "message": None if folder else f"{where}: no frame image found (first: {entry['frames'][:1]})"}


def _read_file(root: Path, file: Path, compression: str) -> list[dict]:
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise CorpusError(f"{file}: not JSON ({err})") from None
    if not isinstance(data, dict):
        raise CorpusError(f"{file}: the top level must map dataset names to their labels")
    rows = []
    for dataset, labels in data.items():
        prefix = f"{dataset}/" if len(data) > 1 else ""
        for label_name, splits in labels.items():
            for split, node in splits.items():
                if split not in SPLIT_ORDER:
                    raise CorpusError(f"{file}: {dataset}/{label_name}: split {split!r} is not one of "
                                      f"{', '.join(SPLIT_ORDER)}")
                level, entries = _entries(node, compression, f"{file}: {dataset}/{label_name}/{split}")
                rows += [_video_row(root, file, (dataset, label_name, split), name, entry, level, prefix)
                         for name, entry in entries.items()]
    return rows


def _first_split(rows: list[dict]) -> list[dict]:
    """One row per video: the one under the earliest split of SPLIT_ORDER."""
    best: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: SPLIT_ORDER.index(r["split"])):
        best.setdefault(row["video_id"], row)
    return list(best.values())


def read_deepfakebench(roots: Sequence[str | Path] | str | Path, on_missing: str = "error",
                       link_parts: bool = False, options: CorpusOptions | None = None) -> pd.DataFrame:
    """The videos table of DeepfakeBench folders (media `face_images`), sorted by part, video_id."""
    check_on_missing(on_missing)
    options = options or CorpusOptions()
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    paths = check_roots(roots)
    rows: list[dict] = []
    for given, folder, part in zip(roots, paths, part_names(paths)):
        files = _dataset_files(folder)
        if not files:
            raise CorpusError(f"{folder}: no DeepfakeBench dataset JSON (a *.json listing frames)")
        found = _first_split([r for f in files for r in _read_file(folder, f, options.compression)])
        rows += [{**r, "root": str(given), "part": part} for r in found]
    ids = pd.Series([r["video_id"] for r in rows])
    if ids.duplicated().any():
        raise CorpusError(f"video id(s) in two DeepfakeBench folders: {listing(sorted(set(ids[ids.duplicated()])))}")
    raise_missing(rows, on_missing)
    return videos_table(pd.DataFrame(rows), link_parts, media=MEDIA_FACES)
