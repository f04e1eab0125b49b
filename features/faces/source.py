"""Crops read from the face cache when they are used: memory bounded by the batch, not the corpus.

One DFDC part at 32 frames and 380 px is ~33 GB of crops, all of DFDC ~1.6 TB; no process may hold
them. `CropSource` stands in for the stacked (N, S, S, 3) uint8 array of a faces table's crops
wherever level 0 takes one (base_learners.train, base_learners.oof, the packaged detector): an int
index reads that one crop from its video's cache file, an index array or slice gives a sub-source
(row numbers only, no pixels), and `np.asarray(source)` reads them all (for a handful of rows).

What it holds is rows, not pixels: per row the video's number and the crop's number in the video's
file, per video the file and where its crops start (so ~8 bytes a face and ~100 a video; it pickles
to a worker in milliseconds). Building one opens each video's file once to check the crops are
there and fit the faces table, so a stale or foreign cache fails before training, naming the file.

Reads are positioned reads of one crop (npy) or one JPEG decode (jpg): no memory map or file stays
open, so a worker's resident memory is its batch plus what the OS page cache chooses to share.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.faces import cache

ROW_COLUMNS = ("video_id", "crop_idx")


class CropSource:
    """The face crops of a table's rows, in row order, read on demand (see the module docstring)."""

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, crops_dir: Path, crop_format: str, size: int, files: np.ndarray,
                 offsets: np.ndarray, video: np.ndarray, crop: np.ndarray):
        self.crops_dir, self.crop_format, self.size = Path(crops_dir), crop_format, int(size)
        self._store = cache.CROP_STORES.get(crop_format)
        self._files, self._offsets = files, offsets  # per video
        self._video, self._crop = video, crop  # per row

    @classmethod
    def from_table(cls, rows: pd.DataFrame, crops_dir: Path | str) -> CropSource:
        """The crops of `rows` (columns video_id, crop_idx: a faces or frames table), in its order."""
        crops_dir = Path(crops_dir)
        missing = [c for c in ROW_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"a crop source needs columns {list(ROW_COLUMNS)}; the table lacks {missing}")
        fields = cache.read_config(crops_dir)
        fmt, size = fields["crop_format"], int(fields["crop_size"])
        store = cache.CROP_STORES.get(fmt)
        codes, video_ids = pd.factorize(rows["video_id"].astype(str), sort=False)
        crop_idx = rows["crop_idx"].to_numpy(np.int64)
        if len(crop_idx) and crop_idx.min() < 0:
            raise ValueError(f"{crops_dir}: negative crop_idx in the faces table")
        files, offsets = [], np.empty(len(video_ids), np.int64)
        needed = np.full(len(video_ids), -1, np.int64)
        np.maximum.at(needed, codes, crop_idx)
        for i, video_id in enumerate(video_ids):
            if cache.read_marker(crops_dir, video_id) is None:
                raise FileNotFoundError(f"{crops_dir}: no finished face extraction for video {video_id!r} "
                                        "(see face_status)")
            path = store.path(crops_dir, video_id)
            n, offsets[i] = store.locate(path, size)
            if needed[i] >= n:
                raise ValueError(f"{path}: {n} crops, the faces table wants crop {needed[i]} of {video_id!r}")
            files.append(path.name)
        return cls(crops_dir, fmt, size, np.array(files, dtype=object), offsets, codes.astype(np.int32),
                   crop_idx)

    # ---- the array-like contract the training code relies on
    def __len__(self) -> int:
        return len(self._video)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.size, self.size, 3)

    def __getitem__(self, key):
        """`source[i]`: crop i, (S, S, 3) uint8; `source[rows]` (ints, mask, slice): a sub-source."""
        if isinstance(key, (int, np.integer)):
            i = int(key)
            v = self._video[i]
            return self._store.read_at(self.crops_dir / self._files[v], int(self._offsets[v]), int(self._crop[i]),
                                       self.size)
        rows = np.arange(len(self))[key]
        return CropSource(self.crops_dir, self.crop_format, self.size, self._files, self._offsets,
                          self._video[rows], self._crop[rows])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every crop in memory: for a few rows (a video's report, a test), never a corpus."""
        out = np.empty(self.shape, np.uint8)
        for i in range(len(self)):
            out[i] = self[i]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return (f"CropSource({len(self)} crops of {len(np.unique(self._video))} videos, {self.size} px "
                f"{self.crop_format}, {self.crops_dir})")
