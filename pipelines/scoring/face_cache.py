"""predict.py's face cache, kept under a size bound: the least recently used videos go first.

Why: a scoring host runs for months over folders that keep arriving; a cache that only grows fills
its disk. Each video in a face cache folder (features.faces.cache) is a group of files sharing a
stem: crops (`.npy`, or a `.jpg` folder), faces rows, landmarks and the `.status.json` marker that
says it is done. `touch` marks videos as used (the marker's modification time; the marker's content,
and with it the cache's validity check, is unchanged); `prune` removes whole videos, oldest use
first, until the cache's bytes are within the bound. The marker is removed first, so a video half
removed by a crash is simply not done and is extracted again.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from features.faces import cache

log = logging.getLogger(__name__)

MARKER_SUFFIX = ".status.json"


@dataclass
class Entry:
    """One cached video: its files and when it was last used."""

    marker: Path
    files: list[Path]
    size: int
    used: float


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def entries(cache_dir: Path) -> list[Entry]:
    """Every finished video of every face cache folder under `cache_dir`."""
    out = []
    for marker in Path(cache_dir).glob(f"*/*{MARKER_SUFFIX}"):
        stem = marker.name[: -len(MARKER_SUFFIX)]
        files = [p for p in marker.parent.iterdir() if p != marker and p.name.startswith(stem + ".")]
        try:
            out.append(Entry(marker, files, sum(_size(f) for f in files) + _size(marker), marker.stat().st_mtime))
        except OSError:  # removed meanwhile (another process pruning)
            continue
    return out


def touch(crops_dir: Path, video_ids) -> None:
    """Mark these videos as just used (the least recently used are evicted first)."""
    for vid in video_ids:
        path = cache.marker_path(Path(crops_dir), vid)
        try:
            os.utime(path)
        except FileNotFoundError:  # a missing file: never cached
            continue


def prune(cache_dir: Path, max_bytes: int) -> int:
    """Remove the least recently used videos until the cache holds at most `max_bytes`; returns
    how many went."""
    found = sorted(entries(cache_dir), key=lambda e: e.used)
    total = sum(e.size for e in found)
    removed = 0
    for entry in found:
        if total <= max_bytes:
            break
        entry.marker.unlink(missing_ok=True)  # first: a half-removed video is not done
        for f in entry.files:
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)
        total -= entry.size
        removed += 1
    if removed:
        log.info("face cache %s: %d least recently used videos removed (%d bytes left, bound %d)",
                 cache_dir, removed, total, max_bytes)
    return removed
