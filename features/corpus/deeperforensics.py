"""Read DeeperForensics-1.0 folders into the videos table, with FaceForensics++ reals.

The published layout: `manipulated_videos/<variant>/<target>_<source>.mp4` (FAKE; e.g.
`end_to_end/000_M101.mp4`: FF++ youtube video `000` with the face of DeeperForensics actor
`M101`; the variants are the clean method and its perturbed copies) and
`lists/splits/{train,val,test}.txt`, one file name per line: the split of that fake in every
variant. A fake no list names is `train` (as in the other layouts).

DeeperForensics ships no real videos: as its README says, its reals are the FF++ youtube
originals of the targets. `options.real_root` names the FF++ folder; the reals read are
`original_sequences/youtube/<options.compression>/videos/<target>.mp4` of the targets some fake
uses (root = real_root, path relative to it).

Groups: a fake is joined to its target's real (`original`) and, by links tokens, to every video
of the same target and of the same source actor, whose face it shows. A real takes the split of
its fakes; fakes of one target in two splits would put the same scene on both sides, so that is
a CorpusError. Every bad input is a CorpusError naming the file (and line): a list line that
does not parse, a file name that does not parse, a listed fake or a needed real that is absent
(unless on_missing="status": then a `missing_file` row).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import pandas as pd

from features.corpus.folds import LINK_SEP, TEST_SPLIT
from features.corpus.options import COMPRESSIONS, CorpusOptions
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

FAKES_DIR = "manipulated_videos"
DEFAULT_SPLIT_DIR = Path("lists") / "splits"
VAL_SPLIT = "val"
SPLITS = (TRAIN_SPLIT, VAL_SPLIT, TEST_SPLIT)  # lists/splits/<split>.txt
FAKE_NAME = re.compile(r"(?P<target>\d+)_(?P<source>[A-Za-z]+\d+)")  # stem of `000_M101.mp4`
EXPECTED_NAME = "<target>_<source>.mp4, e.g. 000_M101.mp4"
REAL_DIR = ("original_sequences", "youtube")  # under real_root, then <compression>/videos
REAL_VIDEOS = "videos"
REAL_EXT = ".mp4"
REAL_METHOD = "youtube"
TARGET_TOKEN = "ffpp:youtube:{}"  # links tokens (prefixed: tokens are global); same form as ffpp.py
ACTOR_TOKEN = "deeperforensics:actor:{}"


def is_deeperforensics(root: str | Path) -> bool:
    """A folder in this layout: it has manipulated_videos/."""
    return (Path(root) / FAKES_DIR).is_dir()


def _parse_name(where: str, file: str) -> tuple[str, str]:
    """(target, source) of a fake's file name."""
    name = PurePosixPath(file)
    match = FAKE_NAME.fullmatch(name.stem) if name.suffix.lower() in VIDEO_EXTENSIONS else None
    if name.name != file or match is None:
        raise CorpusError(f"{where}: file name {file!r} does not parse (expected {EXPECTED_NAME})")
    return match["target"], match["source"]


def _fake_row(where: str, variant: str, file: str) -> dict[str, Any]:
    target, source = _parse_name(where, file)
    return {"video_id": f"{variant}/{file}", "path": f"{FAKES_DIR}/{variant}/{file}", "label": FAKE,
            "original": f"{REAL_METHOD}/{target}{REAL_EXT}", "method": variant, "target": target,
            "links": LINK_SEP.join([TARGET_TOKEN.format(target), ACTOR_TOKEN.format(source)]),
            "split": TRAIN_SPLIT, "status": STATUS_OK, "message": None}


def _variants(root: Path, methods: Sequence[str]) -> list[str]:
    """The variant folders to read: all found, or the selected ones (each must exist)."""
    found = sorted(d.name for d in (root / FAKES_DIR).iterdir() if d.is_dir())
    if not found:
        raise CorpusError(f"{root / FAKES_DIR}: has no variant folders")
    unknown = [m for m in methods if m not in found]
    if unknown:
        raise CorpusError(f"{root / FAKES_DIR}: unknown variant(s) {listing(unknown)} in corpus.methods; "
                          f"found: {', '.join(found)}")
    return sorted(set(methods)) if methods else found


def _split_dir(root: Path, options: CorpusOptions) -> Path:
    if options.split_dir is None:
        return root / DEFAULT_SPLIT_DIR
    path = Path(options.split_dir)
    if not path.is_dir():
        raise CorpusError(f"{path}: corpus.split_dir does not exist or is not a folder")
    return path


def _read_lists(folder: Path) -> dict[str, tuple[str, str]]:
    """file name -> (split, where) from the split lists in `folder` (those present; blank lines
    skipped). A name in two lines would be a fake on two sides of the split, hence an error."""
    listed: dict[str, tuple[str, str]] = {}
    for split in SPLITS:
        path = folder / f"{split}.txt"
        if not path.is_file():
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise CorpusError(f"{path}: not UTF-8 text ({err})") from None
        for number, line in enumerate(lines, start=1):
            where, name = f"{path}, line {number}", line.strip()
            if not name:
                continue
            _parse_name(where, name)
            if name in listed:
                raise CorpusError(f"{where}: {name!r} is listed twice (first at {listed[name][1]})")
            listed[name] = (split, where)
    return listed


def _read_part(root: Path, options: CorpusOptions) -> list[dict[str, Any]]:
    """The fakes of one DeeperForensics folder, with their splits and missing listed ones."""
    listed = _read_lists(_split_dir(root, options))
    rows: dict[str, dict[str, Any]] = {}
    for variant in _variants(root, options.methods):
        for file in sorted((root / FAKES_DIR / variant).iterdir()):
            if file.is_file() and file.suffix.lower() in VIDEO_EXTENSIONS:
                row = _fake_row(str(file), variant, file.name)
                rows[row["video_id"]] = row
        for name, (_, where) in listed.items():
            vid = f"{variant}/{name}"
            if vid not in rows:
                rows[vid] = {**_fake_row(where, variant, name), "status": STATUS_MISSING,
                             "message": f"{where}: listed fake not found: {root / FAKES_DIR / vid}"}
    for row in rows.values():
        row["split"] = listed.get(PurePosixPath(row["video_id"]).name, (TRAIN_SPLIT, ""))[0]
    return list(rows.values())


def _real_split(target: str, fakes: list[dict[str, Any]]) -> str:
    """The split of a target's fakes; two splits would put one scene on both sides (a leak)."""
    by_split: dict[str, list[str]] = defaultdict(list)
    for fake in fakes:
        by_split[fake["split"]].append(fake["video_id"])
    if len(by_split) > 1:
        detail = "; ".join(f"{s}: {listing(sorted(v))}" for s, v in sorted(by_split.items()))
        raise CorpusError(f"target {target}: its fakes are in {len(by_split)} splits ({detail}); its real "
                          f"{REAL_METHOD}/{target}{REAL_EXT} would leak across them")
    return next(iter(by_split))


def _real_folder(options: CorpusOptions) -> tuple[Path, Path]:
    """(real_root, its youtube videos folder); every problem here is a setting, not a missing file."""
    if options.real_root is None:
        raise CorpusError("DeeperForensics has no real videos of its own: set corpus.real_root to the "
                          "FaceForensics++ folder whose original_sequences/youtube videos are its reals")
    if options.compression not in COMPRESSIONS:
        raise CorpusError(f"corpus.compression={options.compression!r}; valid: {', '.join(COMPRESSIONS)}")
    real_root = Path(options.real_root)
    videos = real_root.joinpath(*REAL_DIR, options.compression, REAL_VIDEOS)
    if not videos.is_dir():
        raise CorpusError(f"{videos}: not found; corpus.real_root must be the FaceForensics++ folder and "
                          f"corpus.compression ({options.compression}) one it holds")
    return real_root, videos


def _real_row(target: str, its_fakes: list[dict[str, Any]], options: CorpusOptions, part: str,
              folders: tuple[Path, Path]) -> dict[str, Any]:
    real_root, videos = folders
    file = videos / f"{target}{REAL_EXT}"
    found = file.is_file()
    return {"video_id": f"{REAL_METHOD}/{target}{REAL_EXT}", "path": file.relative_to(real_root).as_posix(),
            "root": str(options.real_root), "part": part, "label": REAL, "original": None,
            "split": _real_split(target, its_fakes), "method": REAL_METHOD,
            "compression": options.compression, "links": TARGET_TOKEN.format(target),
            "status": STATUS_OK if found else STATUS_MISSING,
            "message": None if found else f"real video not found: {file} (the original of "
                                          f"{its_fakes[0]['video_id']})"}


def _real_rows(fakes: list[dict[str, Any]], options: CorpusOptions, part: str) -> list[dict[str, Any]]:
    """One real per target some fake uses (only those: FF++ has 1000), with the split of its fakes."""
    folders = _real_folder(options)
    by_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for fake in fakes:
        by_target[fake["target"]].append(fake)
    return [_real_row(t, f, options, part, folders) for t, f in sorted(by_target.items())]


def read_deeperforensics(roots: Sequence[str | Path] | str | Path, on_missing: str = "error",
                         link_parts: bool = False, options: CorpusOptions | None = None) -> pd.DataFrame:
    """The videos table of DeeperForensics folders plus their FF++ reals, sorted by part, video_id.

    Fakes: video_id `<variant>/<file>`, method the variant, compression missing. Reals: video_id
    `youtube/<target>.mp4`, method `youtube`, compression `options.compression`, part the
    real_root's folder name. `options.methods` selects variants (empty: all).
    """
    check_on_missing(on_missing)
    options = options or CorpusOptions()
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    paths = check_roots(roots)
    for path in paths:
        if not is_deeperforensics(path):
            raise CorpusError(f"{path}: not a DeeperForensics folder (has no {FAKES_DIR}/)")
    extra = [Path(options.real_root)] if options.real_root is not None else []
    parts = part_names(paths + extra)
    fakes: list[dict[str, Any]] = []
    for given, folder, part in zip(roots, paths, parts):
        fakes += [{**r, "root": str(given), "part": part} for r in _read_part(folder, options)]
    if not fakes:
        raise CorpusError(f"no fake videos under {', '.join(str(p / FAKES_DIR) for p in paths)}")
    ids = pd.Series([r["video_id"] for r in fakes])
    if ids.duplicated().any():
        raise CorpusError(f"video id(s) in two DeeperForensics folders: "
                          f"{listing(sorted(set(ids[ids.duplicated()])))} (read one copy per run)")
    rows = fakes + _real_rows(fakes, options, parts[-1])
    raise_missing(rows, on_missing)
    return videos_table(pd.DataFrame(rows).drop(columns=["target"]), link_parts)
