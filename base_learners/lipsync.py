"""A level-0 lip-sync learner: does the mouth in this frame go with the sound around it?

Why it looks like this:

* **One sample per sampled frame with a face**: the mouth box of that frame's face crop (the middle
  of its lower half; face_idx 0, from the face stage's cache), small and grey, paired with the
  log-mel window the audio stage centres on the same frame (features.audio). A talking mouth opens
  with the voice's envelope, so a frame whose mouth is open while the window's centre is quiet (or
  the reverse) is evidence of a fake whose lips do not follow the voice. One frame is weak evidence; features.aggregate's per-video
  statistics over the sampled frames are what the stack reads, as for every frame learner.
* **Two streams, one logit**: a conv stream per modality, each ending in an embedding; the two are
  concatenated and a small MLP gives the logit, so the head can learn how they must agree (a plain
  sum of per-stream scores could not express "open mouth AND quiet sound").
* **The audio stream keeps time, not frequency**: after its conv blocks the mel axis is averaged and
  the time positions are kept, so where in the window the energy sits (at its centre, the frame's
  instant, or beside it) reaches the head. What the spectrum says about the voice is the soundtrack
  learner's job (base_learners.audio); this one is built to read timing.
* **Three targets** (`target`): `label`, the video's label as for every learner (the stack sorts out
  which fakes it can see), or `sync`, self-supervised from real videos alone (in sync: the frame's
  own window; out of sync: a window from elsewhere; base_learners.lipsync_sync), whose output is
  P(out of sync) of each frame's aligned pair. `audio_input: envelope` feeds the audio stream only the
  loudness over time (mean over the mel bands), so it cannot read the voice's spectrum. The third,
  `corr`, is no net: a mouth-to-loudness map learnt from real videos and the per-video correlation
  of what it predicts with what is heard (base_learners.lipsync_corr); it takes the net's place in
  units, oof rows and the packaged detector.
* **Small on purpose**: a few tens of thousands of weights; the sound corpus's folds train in
  seconds on one CPU thread. Deterministic for a seed and a thread count (seeded init, dropout and
  batch order), like the audio CNN, whose conv block and learning-rate schedule it shares.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn

from base_learners.audio import conv_block, fit_binary, window_preds
from base_learners.lipsync_corr import MOUTH_INPUTS, MOUTH_LANDMARKS, MOUTH_PIXELS, OPENING_SHAPE, SyncCorrModel, fit_corr
from base_learners.lipsync_sync import (
    AUDIO_ENVELOPE,
    AUDIO_INPUTS,
    AUDIO_MEL,
    SYNC_MIN_GAP_S,
    SYNC_NEGATIVES,
    TARGET_CORR,
    TARGET_LABEL,
    TARGET_SYNC,
    TARGETS,
    real_videos,
    sync_pairs,
)
from features.common import added_field

log = logging.getLogger(__name__)

LEARNER = "lipsync"
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma of an RGB crop
PIXEL_SCALE = 255.0  # uint8 crops -> [0, 1]
POOL = 2  # conv_block's pooling: each block halves both axes
RGB_CHANNELS = 3


@dataclass(frozen=True)
class LipSyncTrainConfig:
    """How the lip-sync net is built and trained (the sound's windows are the audio section's)."""

    mouth_size: int = 32  # the mouth box is resized to (size/2, size) px
    # (top, bottom, left, right) of the face crop, as fractions of its side: the middle of its lower
    # half, where an aligned face's mouth sits (the rest of the lower half is chin, neck, background)
    mouth_box: tuple[float, float, float, float] = (0.5, 0.9, 0.2, 0.8)
    grey: bool = True  # one luma channel (the mouth's opening is a shape, not a colour)
    mouth_channels: tuple[int, ...] = (8, 16)  # one conv block per entry, on the mouth
    audio_channels: tuple[int, ...] = (8, 16)  # one conv block per entry, on the log-mel window
    embed_dim: int = 32  # each stream's embedding, and the head's hidden width
    drop_rate: float = 0.2
    epochs: int = 12
    batch_size: int = 32
    predict_batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-2
    min_lr_frac: float = 0.05  # cosine decay to lr * min_lr_frac
    seed: int = 0
    # what it learns (base_learners.lipsync_sync): `label` the video's label, `sync` in vs out of sync
    # from real videos alone; the fields below are added ones (keyed only off their defaults)
    target: str = added_field(TARGET_LABEL)
    sync_min_gap_s: float = added_field(SYNC_MIN_GAP_S)  # a negative's window centre this far or more away
    sync_negatives: int = added_field(SYNC_NEGATIVES)  # negatives per positive
    sync_cross_share: float = added_field(0.0)  # share of negatives from another real video
    audio_input: str = added_field(AUDIO_MEL)  # `envelope`: only the loudness over time reaches the net
    per_video_centred: bool = added_field(False)  # subtract each video's mean mouth and sound (its identity, its loudness)
    audio_span_s: float = added_field(0.0)  # > 0: only this much sound, centred on the frame's instant (0: the window)
    # the mouth as its patch's pixels, or (target corr, faces.landmarks: 68) its opening from landmarks
    mouth_input: str = added_field(MOUTH_PIXELS)

    def __post_init__(self) -> None:
        if self.mouth_size < 2 * POOL ** len(self.mouth_channels) or not self.mouth_channels or not self.audio_channels:
            raise ValueError(f"lipsync.train: mouth_size {self.mouth_size} too small for {len(self.mouth_channels)} "
                             "conv blocks, or a stream without conv blocks")
        top, bottom, left, right = self.mouth_box
        if not (0 <= top < bottom <= 1 and 0 <= left < right <= 1):
            raise ValueError(f"lipsync.train.mouth_box: need 0 <= top < bottom <= 1, 0 <= left < right <= 1; got {self.mouth_box}")
        if self.embed_dim < 1 or self.epochs < 1 or self.batch_size < 2:
            raise ValueError("lipsync.train: embed_dim, epochs >= 1 and batch_size >= 2 (batch norm) needed")
        if self.target not in TARGETS or self.audio_input not in AUDIO_INPUTS:
            raise ValueError(f"lipsync.train: target must be one of {TARGETS}, audio_input one of {AUDIO_INPUTS}; "
                             f"got {self.target!r}, {self.audio_input!r}")
        if self.audio_span_s < 0:
            raise ValueError(f"lipsync.train.audio_span_s must be >= 0, got {self.audio_span_s}")
        if self.mouth_input not in MOUTH_INPUTS:
            raise ValueError(f"lipsync.train.mouth_input must be one of {MOUTH_INPUTS}, got {self.mouth_input!r}")
        if self.mouth_input == MOUTH_LANDMARKS and self.target != TARGET_CORR:
            raise ValueError("lipsync.train.mouth_input landmarks is read by target corr only (the nets read pixels)")
        if self.target == TARGET_CORR and self.audio_span_s == 0:
            raise ValueError("lipsync.train: target corr reads the loudness at each frame's instant: "
                             "set audio_span_s > 0 (e.g. 0.1)")
        if self.sync_min_gap_s <= 0 or self.sync_negatives < 1 or not 0 <= self.sync_cross_share <= 1:
            raise ValueError("lipsync.train: sync_min_gap_s > 0, sync_negatives >= 1, 0 <= sync_cross_share <= 1 needed")

    @property
    def mouth_channels_in(self) -> int:
        return 1 if self.grey else RGB_CHANNELS

    @property
    def mouth_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one mouth patch (landmarks: its opening, one number)."""
        if self.mouth_input == MOUTH_LANDMARKS:
            return OPENING_SHAPE
        return (self.mouth_channels_in, self.mouth_size // 2, self.mouth_size)


@dataclass(frozen=True)
class LipSyncStageConfig:
    """`audio.lipsync` of oof.py: off by default (and then in no hash); it needs `audio.enabled`,
    whose windows (audio.features) and thread count (audio.num_threads) it uses."""

    enabled: bool = False
    learner: str = LEARNER  # its name in frame_preds and the stack's tables
    train: LipSyncTrainConfig = LipSyncTrainConfig()


def mouth_patch(crop: np.ndarray, cfg: LipSyncTrainConfig) -> np.ndarray:
    """(C, size/2, size) float32 in [0, 1]: the mouth box of an (H, W, 3) uint8 RGB face crop,
    resized (area interpolation: a downscale that averages, no aliasing) and grey unless cfg says not."""
    h, w = crop.shape[:2]
    top, bottom, left, right = cfg.mouth_box
    box = crop[int(round(top * h)):max(int(round(bottom * h)), int(round(top * h)) + 1),
               int(round(left * w)):max(int(round(right * w)), int(round(left * w)) + 1)]
    size = (cfg.mouth_size, cfg.mouth_size // 2)  # cv2: (width, height)
    lower = cv2.resize(np.ascontiguousarray(box), size, interpolation=cv2.INTER_AREA).astype(np.float32) / PIXEL_SCALE
    if cfg.grey:
        return (lower @ np.asarray(GREY_WEIGHTS, np.float32))[None]
    return np.ascontiguousarray(lower.transpose(2, 0, 1))


def mouth_patches(crops, cfg: LipSyncTrainConfig) -> torch.Tensor:
    """(N, C, size/2, size) of a sequence of crops (a CropSource reads one at a time: only the small
    patches are held)."""
    out = np.empty((len(crops), *cfg.mouth_shape), np.float32)
    for i in range(len(crops)):
        out[i] = mouth_patch(crops[i], cfg)
    return torch.from_numpy(out)


def _pooled(n: int, n_blocks: int) -> int:
    for _ in range(n_blocks):
        n = math.ceil(n / POOL)
    return n


class LipSyncNet(nn.Module):
    """(mouth (B, C, h, w), log-mel (B, n_mels, t)) -> one logit (see the module docstring)."""

    HEAD_PREFIXES = ("head.", "logit_offset")

    def __init__(self, n_mels: int, n_time: int, cfg: LipSyncTrainConfig):
        super().__init__()
        self.n_mels, self.n_time, self.mouth_shape = n_mels, n_time, cfg.mouth_shape
        self.envelope = cfg.audio_input == AUDIO_ENVELOPE
        n_bands = 1 if self.envelope else n_mels
        c, h, w = cfg.mouth_shape
        mw, aw = (c, *cfg.mouth_channels), (1, *cfg.audio_channels)
        self.mouth_norm = nn.BatchNorm2d(c)
        self.mouth = nn.Sequential(*(conv_block(a, b) for a, b in zip(mw[:-1], mw[1:])))
        n_mouth = cfg.mouth_channels[-1] * _pooled(h, len(cfg.mouth_channels)) * _pooled(w, len(cfg.mouth_channels))
        self.mouth_embed = nn.Sequential(nn.Flatten(), nn.Linear(n_mouth, cfg.embed_dim), nn.ReLU(inplace=True))
        self.audio_norm = nn.BatchNorm1d(n_bands)  # per band: loudness per band over the batch
        self.audio = nn.Sequential(*(conv_block(a, b) for a, b in zip(aw[:-1], aw[1:])))
        n_audio = cfg.audio_channels[-1] * _pooled(n_time, len(cfg.audio_channels))
        self.audio_embed = nn.Sequential(nn.Flatten(), nn.Linear(n_audio, cfg.embed_dim), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(cfg.drop_rate), nn.Linear(2 * cfg.embed_dim, cfg.embed_dim),
                                  nn.ReLU(inplace=True), nn.Linear(cfg.embed_dim, 1))
        self.register_buffer("logit_offset", torch.zeros(()))

    def forward(self, mouth: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        if tuple(mouth.shape[1:]) != self.mouth_shape or tuple(mel.shape[1:]) != (self.n_mels, self.n_time):
            raise ValueError(f"LipSyncNet wants mouths (B, {self.mouth_shape}) and log-mel (B, {self.n_mels}, "
                             f"{self.n_time}), got {tuple(mouth.shape)} and {tuple(mel.shape)}")
        m = self.mouth_embed(self.mouth(self.mouth_norm(mouth)))
        if self.envelope:  # the window's loudness over time: its timing without its spectrum
            mel = mel.mean(dim=1, keepdim=True)
        a = self.audio(self.audio_norm(mel).unsqueeze(1)).mean(dim=2)  # (B, C, t'): time kept
        return self.head(torch.cat([m, self.audio_embed(a)], dim=1)).squeeze(-1) + self.logit_offset


def build_lipsync_net(n_mels: int, n_time: int, cfg: LipSyncTrainConfig) -> LipSyncNet:
    torch.manual_seed(cfg.seed)  # initial weights are part of the result
    return LipSyncNet(n_mels, n_time, cfg)


def load_lipsync_net(path: Path | str, n_mels: int, n_time: int, cfg: LipSyncTrainConfig
                     ) -> LipSyncNet | SyncCorrModel:
    """A fold model back from its state dict (weights_only: a checkpoint is data), in eval mode."""
    model = SyncCorrModel(cfg.mouth_shape) if cfg.target == TARGET_CORR else LipSyncNet(n_mels, n_time, cfg)
    model.load_state_dict(torch.load(Path(path), map_location="cpu", weights_only=True))
    return model.eval()


def fit_lipsync(mouth: torch.Tensor, mel: torch.Tensor, labels: np.ndarray, cfg: LipSyncTrainConfig
                ) -> tuple[LipSyncNet, list[dict]]:
    """Train on paired (mouth, log-mel) samples with 0/1 labels; (model in eval mode, per-epoch loss)."""
    if not len(mouth) == len(mel) == len(labels) or len(mel) == 0:
        raise ValueError(f"fit_lipsync: {len(mouth)} mouths, {len(mel)} windows, {len(labels)} labels")
    model = build_lipsync_net(mel.shape[1], mel.shape[2], cfg)
    return model, fit_binary(model, (mouth, mel), labels, cfg, "lipsync")


@torch.no_grad()
def predict_lipsync_logits(model: LipSyncNet | SyncCorrModel, mouth: torch.Tensor, mel: torch.Tensor,
                           batch_size: int = 256, video_ids: np.ndarray | None = None,
                           face_idx: np.ndarray | None = None) -> np.ndarray:
    """Logits (N,) of paired samples, in batches, in eval mode; a SyncCorrModel reads whole videos
    (`video_ids`, one per sample, and each sample's face track `face_idx`) and gives NaN to a video
    without a correlation."""
    model.eval()
    if isinstance(model, SyncCorrModel):
        if video_ids is None:
            raise ValueError("predict_lipsync_logits: target corr scores whole videos; pass each sample's video_id")
        return model(mouth, mel, video_ids, face_idx).numpy()
    out = [model(mouth[i:i + batch_size], mel[i:i + batch_size]) for i in range(0, len(mel), batch_size)]
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


def fit_sync(mouth: torch.Tensor, mel: torch.Tensor, video_ids: np.ndarray, centre_s: np.ndarray | None,
             rows: np.ndarray, cfg: LipSyncTrainConfig) -> tuple[LipSyncNet, list[dict]]:
    """Train on in-sync and out-of-sync pairs of the samples `rows` (all of real videos), drawn by
    base_learners.lipsync_sync.sync_pairs from cfg's seed: the target `sync`."""
    if centre_s is None or len(centre_s) != len(mel):
        raise ValueError("lipsync target sync: needs each sample's window centre (seconds into its track)")
    pairs = sync_pairs(video_ids, centre_s, rows, cfg.sync_min_gap_s, cfg.sync_negatives, cfg.sync_cross_share,
                       cfg.seed)
    if not len(pairs.target):
        raise ValueError(f"lipsync target sync: no real training video has windows {cfg.sync_min_gap_s} s apart")
    at_mouth, at_window = torch.from_numpy(pairs.mouth_rows), torch.from_numpy(pairs.window_rows)
    return fit_lipsync(mouth[at_mouth], mel[at_window], pairs.target, cfg)


def scored_rows(model: LipSyncNet | SyncCorrModel, mouth: torch.Tensor, mel: torch.Tensor, index: pd.DataFrame,
                fold, learner: str, batch_size: int) -> pd.DataFrame:
    """window_preds rows of the samples `index` (video_id, window_idx, frame_idx and, with several
    faces a frame, face_idx; aligned with mouth and mel): one row a frame; a sample without a logit
    (target corr: its video has no correlation) gets no row."""
    faces = index["face_idx"].to_numpy() if "face_idx" in index else None
    logits = predict_lipsync_logits(model, mouth, mel, batch_size, index["video_id"].astype(str).to_numpy(), faces)
    keep = np.isfinite(logits)
    if faces is not None:  # corr: every face of a frame carries its video's logit; the frame's first stands for it
        keep &= ~index.duplicated(["video_id", "frame_idx"]).to_numpy()
    return window_preds(index[keep], logits[keep], fold, learner)


@dataclass(frozen=True)
class FitInputs:
    """What a target's fit reads: the samples, their index and labels, the training rows."""

    mouth: torch.Tensor
    mel: torch.Tensor
    index: pd.DataFrame  # video_id, window_idx, frame_idx (face_idx with target corr)
    labels: pd.Series  # video_id -> 0/1
    rows: np.ndarray  # the training samples
    centre_s: np.ndarray | None = None  # each sample's audio centre (target sync pairs by it)
    groups: pd.Series | None = None  # video_id -> group (target corr cross-fits by it)

    @property
    def video_ids(self) -> np.ndarray:
        return self.index["video_id"].astype(str).to_numpy()


def _fit_label(x: FitInputs, cfg: LipSyncTrainConfig) -> tuple[LipSyncNet, list[dict]]:
    y = x.labels.rename(index=str).reindex(x.video_ids[x.rows]).to_numpy(dtype=np.float64)
    if np.isnan(y).any():
        raise ValueError("lipsync train_predict_fold: a training sample's video has no label")
    at = torch.from_numpy(x.rows)
    return fit_lipsync(x.mouth[at], x.mel[at], y, cfg)


def _fit_sync(x: FitInputs, cfg: LipSyncTrainConfig) -> tuple[LipSyncNet, list[dict]]:
    return fit_sync(x.mouth, x.mel, x.video_ids, x.centre_s, x.rows, cfg)


def _fit_corr(x: FitInputs, cfg: LipSyncTrainConfig) -> tuple[SyncCorrModel, list[dict]]:
    faces = x.index["face_idx"].to_numpy() if "face_idx" in x.index else None
    return fit_corr(x.mouth, x.mel, x.video_ids, x.labels, x.rows, cfg.mouth_shape, x.groups, faces)


TARGET_FITS = {TARGET_LABEL: _fit_label, TARGET_SYNC: _fit_sync, TARGET_CORR: _fit_corr}  # one per TARGETS


def train_predict_fold(mouth: torch.Tensor, mel: torch.Tensor, index: pd.DataFrame, labels: pd.Series,
                       train_videos, predict_videos, fold: int, cfg: LipSyncTrainConfig, learner: str = LEARNER,
                       centre_s: np.ndarray | None = None, groups: pd.Series | None = None
                       ) -> tuple[LipSyncNet | SyncCorrModel, pd.DataFrame, list[dict]]:
    """One fold: train on the samples of `train_videos` (labels: video_id -> 0/1; target `sync`: of
    its real ones only, paired by their window centres `centre_s`), predict those of
    `predict_videos` (the held-out fold, aligned pairs); a video in both is refused; target `corr`
    cross-fits by `groups` (video_id -> group). (model, rows, history); the rows are
    base_learners.audio.window_preds rows (frame-prediction columns, face_idx 0)."""
    vids = index["video_id"].astype(str)
    if cfg.target == TARGET_SYNC:  # corr trains its map on the reals and calibrates on all of them
        train_videos = real_videos(train_videos, labels)
    train = vids.isin(set(map(str, train_videos))).to_numpy()
    held = vids.isin(set(map(str, predict_videos))).to_numpy()
    if set(vids[train]) & set(vids[held]):
        raise ValueError("lipsync train_predict_fold: a video is in both the training and the predicted set")
    model, history = TARGET_FITS[cfg.target](FitInputs(mouth, mel, index, labels, np.flatnonzero(train), centre_s, groups), cfg)
    held_rows = torch.from_numpy(np.flatnonzero(held))
    rows = scored_rows(model, mouth[held_rows], mel[held_rows], index.iloc[held_rows.numpy()], fold, learner,
                       cfg.predict_batch_size)
    return model, rows, history
