"""Read FaceForensics++ folders (with DeepFakeDetection) into the videos table.

Layout of one root, as the official download script writes it (`<c>` = raw | c23 | c40):

    original_sequences/youtube/<c>/videos/NNN.mp4                     1000 YouTube originals
    original_sequences/actors/<c>/videos/AA__<scene>.mp4             DeepFakeDetection's actors
    manipulated_sequences/<method>/<c>/videos/AAA_BBB.mp4           Deepfakes, Face2Face, FaceSwap,
                                                                      NeuralTextures, FaceShifter
    manipulated_sequences/DeepFakeDetection/<c>/videos/AA_BB__<scene>__<CODE>.mp4
    splits/{train,val,test}.json                                      official splits (optional)

Conventions of the table (every later stage keys on them):

* `video_id` = `<source folder>/<file name>`: `youtube/000.mp4`, `actors/01__walking.mp4`,
  `Deepfakes/000_003.mp4`, `DeepFakeDetection/01_02__walking__ABCD1234.mp4`. File names alone
  collide (every method has a `000_003.mp4`), so the id carries the folder; it is unique
  across all roots read together, else a CorpusError.
* `method` = that source folder: the manipulation for a fake, `youtube` or `actors` for an
  original. `compression` = the `<c>` read (only `options.compression`; one per run, because
  the same clip at two qualities is one video, and reading both would double it).
* `original`: fake `A_B` is target A's clip with source B's face, so its original is
  `youtube/A.mp4` (even when absent: the group still forms); a DFD fake's original is its
  target actor's `AA__<scene>` clip when that is in the table, else none.
* `links` (features.corpus.folds.connected_groups): identity tokens, `ffpp:youtube:A` and
  `ffpp:actor:AA` (`youtube_token`, `actor_token`). A fake links its target and its source,
  each original its own person, so every video showing a person ends in one group: B's face in
  `A_B` must not sit in another fold than B's own clip.
* `split`: from the split files, a pair (A, B) gives its split (`train`, `val`, `test`) to
  `youtube/A`, `youtube/B` and `A_B`, `B_A` of every method read; actors and DFD videos are in
  no split file and are `train`. Without split files everything is `train`.

Strict, as the DFDC reader: a file name that does not parse, an unknown folder, a missing
compression folder, a malformed split file, an id in two split files, or a video in no split
pair is a CorpusError naming the file. The one tolerated gap is a video named by a split file
but not on disk, and only with `on_missing="status"`: it is kept as a `missing_file` row (with
the path where it should be) so the split stays complete. Hidden files and non-video files are
ignored.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple, Sequence

import pandas as pd

from features.corpus.folds import LINK_SEP, TEST_SPLIT
from features.corpus.options import COMPRESSIONS, CorpusOptions
from features.corpus.readers import (
    FAKE,
    ON_MISSING_CHOICES,
    REAL,
    STATUS_MISSING,
    STATUS_OK,
    TRAIN_SPLIT,
    VIDEO_EXTENSIONS,
    CorpusError,
    check_roots,
    listing,
    part_names,
    videos_table,
)

ORIGINALS_DIR = "original_sequences"
MANIPULATED_DIR = "manipulated_sequences"
VIDEOS_DIR = "videos"
YOUTUBE = "youtube"
ACTORS = "actors"
ORIGINAL_SOURCES = (YOUTUBE, ACTORS)
PAIR_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")  # fakes named A_B
DFD_METHOD = "DeepFakeDetection"
METHODS = PAIR_METHODS + (DFD_METHOD,)
VAL_SPLIT = "val"
SPLITS = (TRAIN_SPLIT, VAL_SPLIT, TEST_SPLIT)  # split name = split file stem
SPLIT_DIR_NAME = "splits"
SPLIT_SUFFIX = ".json"
FFPP_EXTENSION = ".mp4"  # the extension of a video the split files name but the disk lacks
PAIR_LEN = 2
TOKEN_PREFIX = "ffpp"

YOUTUBE_NAME = re.compile(r"\d{3}")
PAIR_NAME = re.compile(r"(?P<target>\d{3})_(?P<source>\d{3})")
ACTOR_NAME = re.compile(r"(?P<actor>\d{2})__(?P<scene>.+)")
DFD_NAME = re.compile(r"(?P<target>\d{2})_(?P<source>\d{2})__(?P<scene>.+)__(?P<code>[A-Za-z0-9]+)")
NAME_FORMS = {YOUTUBE: "NNN.mp4 (3-digit youtube id)", ACTORS: "AA__<scene>.mp4 (2-digit actor id)",
              DFD_METHOD: "AA_BB__<scene>__<CODE>.mp4 (target and source actor ids)"}
PAIR_FORM = "AAA_BBB.mp4 (target and source youtube ids)"
ROW_KEYS = ("video_id", "path", "root", "label", "original", "split", "part", "status", "message",
            "method", "compression", "links")


def is_ffpp(root: Path) -> bool:
    """A folder in this layout: it holds original_sequences/ or manipulated_sequences/."""
    return (Path(root) / ORIGINALS_DIR).is_dir() or (Path(root) / MANIPULATED_DIR).is_dir()


def youtube_token(youtube_id: str) -> str:
    """The link token of the person in youtube clip NNN (for readers that reuse FF++ people)."""
    return f"{TOKEN_PREFIX}:{YOUTUBE}:{youtube_id}"


def actor_token(actor_id: str) -> str:
    """The link token of DeepFakeDetection actor AA."""
    return f"{TOKEN_PREFIX}:actor:{actor_id}"


class _Identity(NamedTuple):
    """What a file name says: `own` the key an original is looked up by, `origin` the key of its
    original, `split_key` the ids whose split it takes (None: not in the split files), `tokens`
    its people."""

    own: tuple[str, ...] | None
    origin: tuple[str, ...] | None
    split_key: tuple[str, ...] | None
    tokens: tuple[str, ...]


def _parse(source: str, stem: str) -> _Identity | None:
    """The identity of one file name in a source folder, or None when it does not parse."""
    if source == YOUTUBE:
        return _Identity((YOUTUBE, stem), None, (stem,), (youtube_token(stem),)) \
            if YOUTUBE_NAME.fullmatch(stem) else None
    if source == ACTORS:
        m = ACTOR_NAME.fullmatch(stem)
        return m and _Identity((ACTORS, m["actor"], m["scene"]), None, None, (actor_token(m["actor"]),))
    if source == DFD_METHOD:
        m = DFD_NAME.fullmatch(stem)
        return m and _Identity(None, (ACTORS, m["target"], m["scene"]), None,
                               (actor_token(m["target"]), actor_token(m["source"])))
    m = PAIR_NAME.fullmatch(stem)
    return m and _Identity(None, (YOUTUBE, m["target"]), (m["target"], m["source"]),
                           (youtube_token(m["target"]), youtube_token(m["source"])))


def _row(root: Path, top: str, source: str, compression: str, name: str) -> dict[str, Any]:
    """One video's row from its name alone (status is set by the caller)."""
    rel = PurePosixPath(top, source, compression, VIDEOS_DIR, name)
    stem = PurePosixPath(name).stem
    ident = _parse(source, stem)
    if ident is None:
        form = NAME_FORMS.get(source, PAIR_FORM)
        raise CorpusError(f"{root / rel}: file name does not parse as a {source} video; expected {form}")
    return {"video_id": f"{source}/{name}", "path": rel.as_posix(), "file": str(root / rel),
            "label": FAKE if top == MANIPULATED_DIR else REAL, "method": source,
            "compression": compression, "links": LINK_SEP.join(ident.tokens), "ident": ident,
            "key": (source, stem)}


def _sources(root: Path) -> list[tuple[str, str]]:
    """(top folder, source folder) pairs found in a root; an unknown folder is an error, since it
    is most likely a misnamed method whose videos would silently be left out."""
    if not is_ffpp(root):
        raise CorpusError(f"{root}: not a FaceForensics++ folder (no {ORIGINALS_DIR}/ or {MANIPULATED_DIR}/)")
    found = []
    for top, known in ((ORIGINALS_DIR, ORIGINAL_SOURCES), (MANIPULATED_DIR, METHODS)):
        base = root / top
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if folder.name not in known:
                raise CorpusError(f"{folder}: unknown folder in {top}/; expected one of {', '.join(known)}")
            found.append((top, folder.name))
    return found


def _wanted_methods(methods: Sequence[str], sources: list[list[tuple[str, str]]],
                    roots: list[Path]) -> set[str]:
    """options.methods checked against the known methods and those found (empty: all found)."""
    found = sorted({s for per_root in sources for top, s in per_root if top == MANIPULATED_DIR})
    if not methods:
        return set(found)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise CorpusError(f"unknown FaceForensics++ method(s) {unknown}; valid: {', '.join(METHODS)}")
    absent = [m for m in methods if m not in found]
    if absent:
        where = ", ".join(str(r / MANIPULATED_DIR) for r in roots)
        raise CorpusError(f"method(s) {absent} not found in {where}; found: {', '.join(found) or 'none'}")
    return set(methods)


def _videos_folder(root: Path, top: str, source: str, compression: str) -> Path:
    """`<source>/<c>/videos`; a source without the asked compression is an error (reading the
    others would mix qualities, skipping it would drop a whole method unnoticed)."""
    base = root / top / source
    videos = base / compression / VIDEOS_DIR
    if not (base / compression).is_dir():
        found = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise CorpusError(f"{base}: no {compression}/ folder for compression {compression!r}; "
                          f"compressions found: {', '.join(found) or 'none'}")
    if not videos.is_dir():
        raise CorpusError(f"{base / compression}: no {VIDEOS_DIR}/ folder")
    return videos


def _read_source(root: Path, top: str, source: str, compression: str) -> list[dict[str, Any]]:
    folder = _videos_folder(root, top, source, compression)
    names = sorted(p.name for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith("."))
    return [{**_row(root, top, source, compression, n), "status": STATUS_OK, "message": None} for n in names]


def _split_dir(root: Path, options: CorpusOptions) -> Path | None:
    """options.split_dir (must exist), else `<root>/splits` when there is one."""
    if options.split_dir is not None:
        given = Path(options.split_dir)
        if not given.is_dir():
            raise CorpusError(f"{given}: split folder (options.split_dir) does not exist or is not a folder")
        return given
    default = root / SPLIT_DIR_NAME
    return default if default.is_dir() else None


def _check_pair(file: Path, index: int, item: Any) -> tuple[str, str]:
    ok = (isinstance(item, list) and len(item) == PAIR_LEN and item[0] != item[1]
          and all(isinstance(v, str) and YOUTUBE_NAME.fullmatch(v) for v in item))
    if not ok:
        raise CorpusError(f"{file}: pair {index + 1} ({json.dumps(item)}): must be two different 3-digit "
                          'youtube ids, e.g. ["071", "054"]')
    return item[0], item[1]


def _load_split_file(file: Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise CorpusError(f"{file}: not UTF-8 text ({err})") from None
    except json.JSONDecodeError as err:
        raise CorpusError(f"{file}: malformed JSON at line {err.lineno}, column {err.colno}: "
                          f"{err.msg}") from None
    if not isinstance(data, list) or not data:
        raise CorpusError(f"{file}: must be a non-empty JSON list of [target, source] id pairs, "
                          f"got {json.dumps(data)[:40]}")
    return [_check_pair(file, i, item) for i, item in enumerate(data)]


def _load_splits(split_dir: Path) -> dict[str, tuple[Path, list[tuple[str, str]]]]:
    """split -> (file, pairs). An id in two files would put one person on both sides of a split."""
    files = {split: split_dir / f"{split}{SPLIT_SUFFIX}" for split in SPLITS}
    absent = [f.name for f in files.values() if not f.is_file()]
    if absent:
        raise CorpusError(f"{split_dir}: missing split file(s) {', '.join(absent)}; "
                          f"expected {', '.join(f.name for f in files.values())}")
    splits, owner = {}, {}
    for split, file in files.items():
        pairs = _load_split_file(file)
        for i, pair in enumerate(pairs):
            for vid in pair:
                if owner.setdefault(vid, file) != file:
                    raise CorpusError(f"{file}: pair {i + 1} ({json.dumps(list(pair))}): id {vid!r} "
                                      f"is also in {owner[vid]}")
        splits[split] = (file, pairs)
    return splits


def _assign_splits(rows: list[dict[str, Any]], splits: dict | None, split_dir: Path | None) -> None:
    """Give each row its split; a youtube video or A_B fake in no pair is an error, since its
    split (and so the leak-free separation of train and test) would be a guess."""
    of_key: dict[tuple[str, ...], str] = {}
    for split, (_, pairs) in (splits or {}).items():
        for a, b in pairs:
            of_key.update({(a,): split, (b,): split, (a, b): split, (b, a): split})
    unlisted = []
    for row in rows:
        key = row["ident"].split_key
        row["split"] = TRAIN_SPLIT if key is None or splits is None else of_key.get(key)
        if row["split"] is None:
            unlisted.append(row["file"])
    if unlisted:
        raise CorpusError(f"{split_dir}: {len(unlisted)} video(s) in no pair of the split files: "
                          f"{listing(unlisted)}")


def _named_videos(root: Path, splits: dict, chosen: list[tuple[str, str]], compression: str) -> list[dict]:
    """The rows the split files imply for this root's folders: A, B and A_B, B_A of each method."""
    pair_methods = [s for top, s in chosen if s in PAIR_METHODS]
    youtube = (ORIGINALS_DIR, YOUTUBE) in chosen
    named = []
    for split, (file, pairs) in splits.items():
        for a, b in pairs:
            names = [(ORIGINALS_DIR, YOUTUBE, v) for v in (a, b) if youtube]
            names += [(MANIPULATED_DIR, m, s) for m in pair_methods for s in (f"{a}_{b}", f"{b}_{a}")]
            named += [{**_row(root, top, source, compression, stem + FFPP_EXTENSION),
                       "split": split, "named_by": str(file)} for top, source, stem in names]
    return named


def _missing_rows(present: list[dict], named: list[dict], on_missing: str) -> list[dict]:
    """Rows for videos the split files name but no root holds (whatever its extension)."""
    have = {row["key"] for row in present}
    missing, seen = [], set()
    for row in named:
        if row["key"] in have or row["key"] in seen:
            continue
        seen.add(row["key"])
        missing.append({**row, "status": STATUS_MISSING,
                        "message": f"video file not found: {row['file']} (named by {row['named_by']})"})
    if missing and on_missing == "error":
        items = [f"{row['named_by']}: {row['video_id']} ({row['file']})" for row in missing]
        raise CorpusError(f"{len(missing)} video(s) named by the split files not found: {listing(items)}; "
                          "pass on_missing='status' to keep them with status 'missing_file'")
    return missing


def _check_unique(rows: list[dict]) -> None:
    """One video, one row: the same clip twice (two roots, or two extensions) would be in two folds."""
    first: dict[tuple[str, str], str] = {}
    for row in rows:
        if row["key"] in first:
            raise CorpusError(f"video {row['video_id']!r} found twice: {first[row['key']]} and "
                              f"{row['file']}; video ids must be unique across the corpus folders")
        first[row["key"]] = row["file"]


def _resolve_originals(rows: list[dict]) -> None:
    """Point each fake at its original's video_id (the one on disk, whatever its extension)."""
    by_own = {row["ident"].own: row["video_id"] for row in rows if row["ident"].own}
    for row in rows:
        origin = row["ident"].origin
        fallback = f"{YOUTUBE}/{origin[1]}{FFPP_EXTENSION}" if origin and origin[0] == YOUTUBE else None
        row["original"] = None if origin is None else by_own.get(origin, fallback)


def _read_root(root: Path, chosen: list[tuple[str, str]], compression: str,
               split_dir: Path | None) -> tuple[list[dict], list[dict]]:
    """(rows on disk, rows the split files name) of one root."""
    splits = _load_splits(split_dir) if split_dir else None
    rows = [row for top, source in chosen for row in _read_source(root, top, source, compression)]
    _assign_splits(rows, splits, split_dir)
    return rows, (_named_videos(root, splits, chosen, compression) if splits else [])


def read_ffpp(roots: Sequence[str | Path] | str | Path, on_missing: str = "error", link_parts: bool = False,
              options: CorpusOptions | None = None) -> pd.DataFrame:
    """The videos table of FaceForensics++ folders (see the module docstring for its conventions).

    `options.compression` picks the quality read, `options.methods` the manipulated methods
    (empty: all found; originals are always read), `options.split_dir` the split files
    (default `<root>/splits`). `link_parts` as in features.corpus.readers.read_corpora.
    """
    if on_missing not in ON_MISSING_CHOICES:
        raise ValueError(f"on_missing={on_missing!r}; valid: {', '.join(ON_MISSING_CHOICES)}")
    options = options or CorpusOptions()
    if options.compression not in COMPRESSIONS:
        raise CorpusError(f"compression {options.compression!r} is not one of {', '.join(COMPRESSIONS)}")
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    paths = check_roots(roots)
    sources = [_sources(p) for p in paths]
    wanted = _wanted_methods(options.methods, sources, paths)
    present, named = [], []
    for given, folder, part, found in zip(roots, paths, part_names(paths), sources):
        chosen = [(top, s) for top, s in found if top == ORIGINALS_DIR or s in wanted]
        rows, listed = _read_root(folder, chosen, options.compression, _split_dir(folder, options))
        present += [{**row, "root": str(given), "part": part} for row in rows]
        named += [{**row, "root": str(given), "part": part} for row in listed]
    _check_unique(present)
    rows = present + _missing_rows(present, named, on_missing)
    if not rows:
        raise CorpusError(f"no FaceForensics++ videos at compression {options.compression!r} in "
                          f"{listing([str(p) for p in paths])}")
    _resolve_originals(rows)
    return videos_table(pd.DataFrame([{k: row[k] for k in ROW_KEYS} for row in rows]), link_parts)
