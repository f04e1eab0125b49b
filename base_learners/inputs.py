"""What one prediction of a level-0 learner reads: a face, a pair of faces, or a face track.

Every learner predicts rows keyed like the faces table, `(video_id, frame_idx, face_idx)`, but not
every learner reads one crop per row. Its input kind (`input_kind`) says which rows it predicts
and which crops each row reads:

- `frame`: every face, its own crop (the frame learners; the rows and crops are the faces table's);
- `pair`: every face whose track shows up again in the next frame of the same clip, with the crop
  there (a learner on the `delta` view, base_learners.views: what changed from one frame to the next);
- `track`: one row per track and clip, keyed by its first frame, reading the track's crops through
  the clip in time order (the `sequence` learner, base_learners.sequence);
- `pair_track`: the same for runs of a track through consecutive frames of a clip (a missed
  detection splits a track), at least two faces long, read as the sequence of their consecutive
  pairs (a `sequence` learner on the `delta` view: a GRU over what changed, frame by frame).

Clips are the face stage's `clip_idx` (features.faces.extract): with `clip_len` 1 every frame is
its own clip, so a pair learner has no rows and a track learner sees tracks of one frame.

`CropSequences` is the array-like a pair or track learner trains and predicts on: item i is the
(T_i, S, S, 3) uint8 stack of its crops, read from the underlying crops (an array, or a
features.faces.source.CropSource reading the cache per batch) when a batch needs it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from base_learners.registry import LearnerConfig
from base_learners.sequence import SEQUENCE_LEARNERS, SequenceLearner
from base_learners.views import view_frames
from features.contract import with_clip_idx

FRAME, PAIR, TRACK, PAIR_TRACK = "frame", "pair", "track", "pair_track"
INPUT_KINDS = (FRAME, PAIR, TRACK, PAIR_TRACK)
PAIR_FRAMES = 2  # crops a pair view reads (base_learners.views.view_frames)
ITEMS_VERSION = 2  # bump when the items of a kind change meaning (2: pairs only one frame apart); in
# the unit keys of pair and track learners (base_learners.oof.plan_units)
TRACK_KEY = ["video_id", "clip_idx", "face_idx"]


def _kind(sequence: bool, frames: int) -> str:
    pairs = frames == PAIR_FRAMES
    if sequence:
        return PAIR_TRACK if pairs else TRACK
    return PAIR if pairs else FRAME


def input_kind(lcfg: LearnerConfig) -> str:
    """The input kind of a learner config, without building it (see the module docstring)."""
    return _kind(lcfg.name in SEQUENCE_LEARNERS, view_frames(lcfg.view))


def model_input_kind(model) -> str:
    """The input kind of a built learner (a module of the registry)."""
    return _kind(isinstance(model, SequenceLearner), getattr(getattr(model, "input_view", None), "FRAMES", 1))


def item_members(frames: pd.DataFrame, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item rows, member rows, offsets): item i is frames row `items[i]` (its key and label) and
    reads the frames rows `members[offsets[i]:offsets[i + 1]]`, in time order."""
    n = len(frames)
    if kind == FRAME:
        rows = np.arange(n)
        return rows, rows, np.arange(n + 1)
    if kind not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {kind!r}; valid: {', '.join(INPUT_KINDS)}")
    order = with_clip_idx(frames).reset_index(drop=True).sort_values(TRACK_KEY + ["frame_idx"], kind="stable")
    rows = order.index.to_numpy()
    track = order.groupby(TRACK_KEY, sort=False).ngroup().to_numpy()
    if kind in (PAIR, PAIR_TRACK):  # pairs are a face and the same track's face ONE frame later: a
        # detection missed in between breaks the track in two (a two-frame delta would look like flicker)
        gap = np.diff(order["frame_idx"].to_numpy(), prepend=-1) != 1
        track = np.cumsum(np.r_[True, track[1:] != track[:-1]] | gap)
    if kind == PAIR:  # each row and the next row of its run of consecutive frames
        has_next = np.flatnonzero(track[:-1] == track[1:])
        members = np.stack([rows[has_next], rows[has_next + 1]], axis=1).ravel()
        return rows[has_next], members, np.arange(0, 2 * len(has_next) + 1, 2)
    starts = np.flatnonzero(np.diff(track, prepend=-1) != 0)
    offsets = np.r_[starts, len(rows)]
    if kind == PAIR_TRACK:  # a track of one face has no pair
        keep = np.diff(offsets) >= PAIR_FRAMES
        lengths = np.diff(offsets)[keep]
        return rows[starts[keep]], rows[_spans(starts[keep], lengths)], np.r_[0, np.cumsum(lengths)]
    return rows[starts], rows, offsets


def _spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions start, start + 1, ... start + length - 1 of every span, concatenated."""
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)


def learner_inputs(frames: pd.DataFrame, crops, kind: str):
    """(items, crops of the items) of a learner of input kind `kind`: `items` is a frames table
    (video_id, frame_idx, face_idx, label, group, fold, ...) with one row per prediction; frame learners get `frames`
    and `crops` back unchanged."""
    if kind == FRAME:
        return frames, crops
    rows, members, offsets = item_members(frames, kind)
    items = frames.iloc[rows].reset_index(drop=True)
    return items, CropSequences(crops, members, offsets, kind)


class CropSequences:
    """Crop stacks of a pair or track learner's items, read on demand (see the module docstring)."""

    def __init__(self, crops, members: np.ndarray, offsets: np.ndarray, kind: str):
        self.crops, self.members, self.offsets, self.kind = crops, members, offsets, kind

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def dtype(self):
        return self.crops.dtype

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """(S, S, 3): the shape of one crop."""
        return tuple(self.crops.shape[1:])

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, key):
        """`seqs[i]`: item i's (T_i, S, S, 3) crops; `seqs[rows]`: the sub-sequence of those items."""
        if isinstance(key, (int, np.integer)):
            part = self.members[self.offsets[key]:self.offsets[key + 1]]
            return np.stack([self.crops[int(r)] for r in part])
        items = np.arange(len(self))[key]
        lengths = self.lengths()[items]
        members = self.members[_spans(self.offsets[items], lengths)]
        return CropSequences(self.crops, members, np.r_[0, np.cumsum(lengths)], self.kind)

    def collate(self, batch):
        """A loader batch: pairs stack to (B, 2, S, S, 3); tracks to every track's frames in one
        (sum T_i, S, S, 3) tensor and their lengths (B,), so no padding reaches the model; tracks
        of pairs to their consecutive pairs, (sum (T_i - 1), 2, S, S, 3), and T_i - 1."""
        stacks, labels = zip(*batch)
        y = torch.stack(labels)
        if self.kind == PAIR:
            return torch.stack(stacks), y
        if self.kind == PAIR_TRACK:
            stacks = [torch.stack([s[:-1], s[1:]], dim=1) for s in stacks]
        lengths = torch.tensor([len(s) for s in stacks], dtype=torch.long)
        return (torch.cat(stacks), lengths), y

    def __repr__(self) -> str:
        return f"CropSequences({len(self)} {self.kind} items over {len(self.members)} crops)"
