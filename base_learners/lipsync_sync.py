"""The lip-sync learner's self-supervised target (`audio.lipsync.train.target: sync`).

Why it exists: trained on the video labels (real vs any fake), the lip-sync net learnt to read the
voice (the soundtrack learner's job) and not the sync, since few fakes are lip-sync fakes and a
video's label does not say that its lips are out of step. Sync needs no fake at all: in a real
video the mouth of a frame goes with the sound at that instant and not with the sound of another
instant, so real videos alone give both classes.

* **Only real videos train** (label 0 of the training folds): never a held-out, a test or a fake
  video. A lip-sync fake's aligned pair then looks like one of the negatives below; what a fake's
  P(out of sync) means for the video is level 1's to learn, from the per-video statistics.
* **Positives (IN_SYNC)**: a frame's mouth with the window centred on that frame. **Negatives
  (OUT_OF_SYNC)**: the same mouth with the window of another sampled frame of the same video whose
  centre lies at least `sync_min_gap_s` away (same voice, same room: only the timing differs), or,
  for a share `sync_cross_share`, a window of another real video. Each negative comes with a copy of
  its positive, so the classes stay balanced.
* **Gaps are measured between where the audio inputs sit**: features.audio shifts a window that
  would run past either end of the track, so two frames near an end can share nearly the same
  window; the gap is taken between the windows' centres as cut (`window_times`), or between the
  frames' instants when the net reads only `audio_span_s` around each instant (`around_instant`).
* **Deterministic**: the negatives are drawn once from the unit's seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from features.audio import AudioResult, frame_times, read_marker, read_samples

TARGET_LABEL = "label"  # the video's label (real vs any fake), as every learner
TARGET_SYNC = "sync"  # in sync (0) vs out of sync (1), from real videos only
TARGET_CORR = "corr"  # mouth-loudness correlation over a video's frames (base_learners.lipsync_corr)
TARGETS = (TARGET_LABEL, TARGET_SYNC, TARGET_CORR)
AUDIO_MEL = "mel"  # the audio stream reads the log-mel window
AUDIO_ENVELOPE = "envelope"  # ... only its loudness over time (mean over the mel bands): no voice spectrum
AUDIO_INPUTS = (AUDIO_MEL, AUDIO_ENVELOPE)
SYNC_MIN_GAP_S = 0.3  # a negative's window centre is at least this far from the mouth's (~a syllable and a half)
SYNC_NEGATIVES = 2  # negatives drawn per positive (each with a copy of its positive)
IN_SYNC, OUT_OF_SYNC = 0.0, 1.0
REAL = 0.0  # the label of a real video


@dataclass(frozen=True)
class SyncPairs:
    """Training pairs: mouth of sample mouth_rows[i] with the window of sample window_rows[i]."""

    mouth_rows: np.ndarray  # int64 sample indices
    window_rows: np.ndarray
    target: np.ndarray  # float IN_SYNC / OUT_OF_SYNC


def real_videos(train_videos, labels: pd.Series) -> list[str]:
    """The videos of `train_videos` labelled real (labels: video_id -> 0/1): the only ones a sync unit
    trains on."""
    y = labels.rename(index=str)
    return sorted(v for v in map(str, train_videos) if y.get(v) == REAL)


def window_times(decoded: AudioResult, index: pd.DataFrame, sample_rate: int, window_s: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(window centre, frame instant), seconds into the track, of each window of `index` (video_id,
    frame_idx) as features.audio.cut_windows cuts it: near either end of the track the window is
    shifted inside it, and the frame's instant is then off the window's centre."""
    length = int(round(window_s * sample_rate))
    centre, instant = np.full(len(index), np.nan), np.full(len(index), np.nan)
    for video_id, rows in index.groupby("video_id").indices.items():
        marker = read_marker(decoded.audio_dir, video_id)
        n = len(read_samples(decoded.audio_dir, video_id))
        instant[rows] = frame_times(index["frame_idx"].to_numpy()[rows], marker["fps"]) - marker.get("offset_s", 0.0)
        starts = np.clip(np.round(instant[rows] * sample_rate).astype(np.int64) - length // 2, 0, max(n, length) - length)
        centre[rows] = (starts + length // 2) / sample_rate
    return centre, instant


def around_instant(mel: torch.Tensor, shift_s: np.ndarray, hop_s: float, span_s: float) -> torch.Tensor:
    """(N, n_mels, 2h+1): the log-mel columns within span_s / 2 of each frame's instant (shift_s:
    instant - window centre), the edge column repeated past the window's ends. The instant is then
    the middle column for every sample, so the net need not guess where in the window it lies."""
    half, mid = int(round(span_s / 2 / hop_s)), mel.shape[2] // 2
    at = np.clip(mid + np.round(np.asarray(shift_s) / hop_s).astype(np.int64), 0, mel.shape[2] - 1)
    cols = np.clip(at[:, None] + np.arange(-half, half + 1)[None, :], 0, mel.shape[2] - 1)
    index = torch.from_numpy(cols).unsqueeze(1).expand(-1, mel.shape[1], -1)
    return torch.gather(mel, 2, index)


def per_video_centred(x: torch.Tensor, video_ids: np.ndarray) -> torch.Tensor:
    """x less each video's mean over its own samples: what stays is how a frame differs from the
    rest of its video (the mouth's opening, the sound's rise and fall), not who speaks or how loud;
    a test video is centred on its own frames only."""
    out = x.clone()
    for rows in pd.Series(np.arange(len(x))).groupby(np.asarray(video_ids)).indices.values():
        at = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        out[at] -= x[at].mean(dim=0, keepdim=True)
    return out


def _negative(i: int, same: np.ndarray, others: np.ndarray, cross_share: float, rng: np.random.Generator) -> int:
    """One window row for mouth row i: another real video's with probability cross_share (or when
    its own video has no window far enough away), else its own video's; -1 when there is none."""
    cross = len(others) > 0 and (not len(same) or rng.random() < cross_share)
    pool = others if cross else same
    return int(pool[rng.integers(len(pool))]) if len(pool) else -1


def sync_pairs(video_ids: np.ndarray, centre_s: np.ndarray, rows: np.ndarray, min_gap_s: float = SYNC_MIN_GAP_S,
               negatives: int = SYNC_NEGATIVES, cross_share: float = 0.0, seed: int = 0) -> SyncPairs:
    """The pairs of the samples `rows` (all of real videos; see the module docstring). A mouth whose
    video has no window `min_gap_s` away falls back to another video's window when cross_share > 0,
    else it gives no pair."""
    rows = np.asarray(rows, dtype=np.int64)
    vids, centres = np.asarray(video_ids)[rows], np.asarray(centre_s, dtype=np.float64)[rows]
    rng = np.random.default_rng(seed)
    mouth, window, target = [], [], []
    for pos, i in enumerate(rows):
        mine = vids == vids[pos]
        same = rows[mine & (np.abs(centres - centres[pos]) >= min_gap_s)]
        others = rows[~mine] if cross_share > 0 else rows[:0]
        for _ in range(negatives):
            j = _negative(int(i), same, others, cross_share, rng)
            if j >= 0:
                mouth += [i, i]
                window += [i, j]
                target += [IN_SYNC, OUT_OF_SYNC]
    return SyncPairs(np.asarray(mouth, np.int64), np.asarray(window, np.int64), np.asarray(target, np.float64))
