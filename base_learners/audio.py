"""A level-0 soundtrack learner: a small CNN on log-mel windows, one window per sampled frame.

Why it looks like this:

* **Windows play the part of frames.** features.audio cuts one window centred on each frame the
  face stage sampled; this learner scores each window, and its rows (`window_preds`) carry the
  frame-prediction columns (features.contract.FRAME_PREDS_COLUMNS, face_idx 0) plus `window_idx`,
  so features.aggregate's per-video statistics apply unchanged. A video without usable audio simply
  has no rows, and the aggregate leaves its audio features NaN.
* **Labels are the video's.** A fake whose voice was swapped is fake in every window; a face swap
  that kept the voice is labelled fake too, which the stack sorts out by weighing this learner's
  confidence against the frame learners'.
* **Small on purpose.** Three conv blocks on (n_mels, t) images, a mean over time and one linear
  layer over channels x mel bands: a few tens of thousands of weights, trained in seconds on a CPU.
  A per-band batch norm at the input standardises loudness per mel band over the batch, so
  recording level matters less than spectral shape.
* **Independent of base_learners.registry** (owned elsewhere): it follows its contract (logits out,
  a `logit_offset` buffer) so registering it later is a matter of a factory entry; training here is
  self-contained and deterministic for a seed on CPU.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from features.contract import FRAME_PREDS_COLUMNS

log = logging.getLogger(__name__)

LEARNER = "audio_cnn"
WINDOW_PREDS_COLUMNS = FRAME_PREDS_COLUMNS[:2] + ["window_idx"] + FRAME_PREDS_COLUMNS[2:]
CONV_KERNEL = 3
POOL = 2  # each block halves the mel and time axes


@dataclass(frozen=True)
class AudioTrainConfig:
    """How the audio CNN is built and trained."""

    channels: tuple[int, ...] = (16, 32, 64)  # one conv block per entry
    drop_rate: float = 0.2
    epochs: int = 8
    batch_size: int = 32
    predict_batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-2
    min_lr_frac: float = 0.05  # cosine decay to lr * min_lr_frac
    seed: int = 0


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, CONV_KERNEL, padding=CONV_KERNEL // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(POOL, ceil_mode=True))


def pooled_bands(n_mels: int, n_blocks: int) -> int:
    """Mel rows left after `n_blocks` ceil-mode poolings."""
    for _ in range(n_blocks):
        n_mels = math.ceil(n_mels / POOL)
    return n_mels


class AudioCNN(nn.Module):
    """(B, n_mels, t) log-mel -> per-band batch norm -> conv blocks -> mean over time -> one logit.

    Pooling over time only: where in frequency the energy sits (formants, pitch) is what tells voices
    apart, and a global mean over frequency as well would throw it away (measured: a global pool did
    not separate two synthetic voices a time pool separates in one epoch)."""

    HEAD_PREFIXES = ("out.", "logit_offset")

    def __init__(self, n_mels: int, channels: tuple[int, ...] = (16, 32, 64), drop_rate: float = 0.2):
        super().__init__()
        if not channels:
            raise ValueError("AudioCNN needs at least one conv block")
        self.n_mels = n_mels
        self.norm = nn.BatchNorm1d(n_mels)
        widths = (1, *channels)
        self.blocks = nn.Sequential(*(conv_block(a, b) for a, b in zip(widths[:-1], widths[1:])))
        self.dropout = nn.Dropout(drop_rate)
        self.out = nn.Linear(channels[-1] * pooled_bands(n_mels, len(channels)), 1)
        self.register_buffer("logit_offset", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.n_mels:
            raise ValueError(f"AudioCNN wants (B, {self.n_mels}, t) log-mel windows, got {tuple(x.shape)}")
        y = self.blocks(self.norm(x).unsqueeze(1)).mean(dim=-1).flatten(1)
        return self.out(self.dropout(y)).squeeze(-1) + self.logit_offset


def build_audio_cnn(n_mels: int, cfg: AudioTrainConfig) -> AudioCNN:
    torch.manual_seed(cfg.seed)  # initial weights are part of the result
    return AudioCNN(n_mels, tuple(cfg.channels), cfg.drop_rate)


def load_audio_cnn(path: Path | str, n_mels: int, cfg: AudioTrainConfig) -> AudioCNN:
    """A fold model back from its state dict (`model.pt`, as audio_oof saves it), in eval mode.
    Loaded with weights_only=True: a checkpoint is data, never code to unpickle."""
    model = AudioCNN(n_mels, tuple(cfg.channels), cfg.drop_rate)
    model.load_state_dict(torch.load(Path(path), map_location="cpu", weights_only=True))
    return model.eval()


def lr_at(step: int, total: int, cfg) -> float:
    """Cosine decay from cfg.lr to cfg.lr * cfg.min_lr_frac over `total` steps (any train config with
    those two fields: the lip-sync learner shares the schedule)."""
    frac = step / max(total - 1, 1)
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac)))


def fit_audio_cnn(mel: torch.Tensor, labels: np.ndarray, cfg: AudioTrainConfig) -> tuple[AudioCNN, list[dict]]:
    """Train on log-mel windows (N, n_mels, t) with 0/1 labels; (model in eval mode, per-epoch loss).
    Same seed, same data, same thread count: same weights (seeded init, dropout and batch order)."""
    if len(mel) != len(labels) or len(mel) == 0:
        raise ValueError(f"fit_audio_cnn: {len(mel)} windows, {len(labels)} labels")
    model = build_audio_cnn(mel.shape[1], cfg)
    return model, fit_binary(model, (mel,), labels, cfg, "audio cnn")


def fit_binary(model: nn.Module, inputs: tuple[torch.Tensor, ...], labels: np.ndarray, cfg, name: str) -> list[dict]:
    """The sound learners' training loop (this one's and base_learners.lipsync's): AdamW, the cosine
    schedule `lr_at`, batch order from cfg.seed, BCE of model(*batch inputs) against 0/1 labels.
    `cfg` has lr, weight_decay, seed, epochs, batch_size, min_lr_frac. Returns the per-epoch loss;
    the model is left in eval mode."""
    n = len(labels)
    y = torch.as_tensor(np.asarray(labels, np.float32))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    total_steps = cfg.epochs * math.ceil(n / cfg.batch_size)
    loss_fn, history, step = nn.BCEWithLogitsLoss(), [], 0
    model.train()
    for epoch in range(cfg.epochs):
        order, total = torch.randperm(n, generator=gen), 0.0
        for start in range(0, n, cfg.batch_size):
            batch = order[start:start + cfg.batch_size]
            if len(batch) < 2:  # batch norm cannot train on one sample
                continue
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, cfg)
            loss = loss_fn(model(*(x[batch] for x in inputs)), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, step = total + loss.item() * len(batch), step + 1
        history.append({"epoch": epoch, "train_loss": total / n})
        log.debug("%s epoch %d: loss %.4f", name, epoch, history[-1]["train_loss"])
    model.eval()
    return history


@torch.no_grad()
def predict_audio_logits(model: AudioCNN, mel: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Logits (N,) of log-mel windows, in batches, in eval mode."""
    model.eval()
    out = [model(mel[i:i + batch_size]) for i in range(0, len(mel), batch_size)]
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


def window_preds(index: pd.DataFrame, logits: np.ndarray, fold: int, learner: str = LEARNER) -> pd.DataFrame:
    """Prediction rows (WINDOW_PREDS_COLUMNS) for windows described by `index` (video_id, window_idx,
    frame_idx): frame-prediction rows with face_idx 0, so features.aggregate reads them as frames."""
    logits = np.asarray(logits, np.float64)
    return pd.DataFrame({
        "video_id": index["video_id"].astype(str).to_numpy(), "frame_idx": index["frame_idx"].to_numpy(np.int64),
        "window_idx": index["window_idx"].to_numpy(np.int64), "face_idx": 0, "learner": learner, "fold": fold,
        "logit": logits, "prob": 1.0 / (1.0 + np.exp(-logits)),
    }, columns=WINDOW_PREDS_COLUMNS)


def train_predict_fold(mel: torch.Tensor, index: pd.DataFrame, labels: pd.Series, train_videos, predict_videos,
                       fold: int, cfg: AudioTrainConfig) -> tuple[AudioCNN, pd.DataFrame, list[dict]]:
    """One fold, as a frame learner's unit does it: train on the windows of `train_videos` (labels:
    video_id -> 0/1), predict the windows of `predict_videos` (the held-out fold).
    Returns (model, prediction rows, history)."""
    vids = index["video_id"].astype(str)
    train = vids.isin(set(map(str, train_videos))).to_numpy()
    held = vids.isin(set(map(str, predict_videos))).to_numpy()
    if train.any() and held.any() and set(vids[train]) & set(vids[held]):
        raise ValueError("train_predict_fold: a video is in both the training and the predicted set")
    y = labels.rename(index=str).reindex(vids[train]).to_numpy()
    if np.isnan(y.astype(np.float64)).any():
        raise ValueError("train_predict_fold: a training window's video has no label")
    model, history = fit_audio_cnn(mel[torch.from_numpy(np.flatnonzero(train))], y, cfg)
    rows = np.flatnonzero(held)
    logits = predict_audio_logits(model, mel[torch.from_numpy(rows)], cfg.predict_batch_size)
    return model, window_preds(index.iloc[rows], logits, fold), history
