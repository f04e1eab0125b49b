"""A face-sequence learner: a per-frame CNN encoder, then a GRU or LSTM over a track's frames.

Why: every frame learner judges one face at a time, and the video is seen only through the
aggregated statistics of their scores. A swap is re-rendered frame by frame, so it also betrays
itself between frames (the swapped region flickers in position, scale and colour, its boundary
jumps, its expression lags the head). Guera and Delp (2018) fed a CNN's per-frame features to an
LSTM over a video's frames for exactly this; here the sequence is one face track through one clip
of consecutive frames (features.faces: `clip_len`), so what the recurrent layer compares is the
same person a few milliseconds apart.

Contract (as the registry's learners, with one more argument): `model(x, lengths)` takes the
normalised frames of a batch of tracks concatenated in time order, (sum T_i, 3, S, S), and each
track's length T_i (B,), and returns one logit per track (B,). The encoder (any registered family
with an `embed` method: the MesoNets, the timm families, the O-Net) embeds every frame; the
embeddings are split by track and packed (`pack_sequence`), so tracks of unequal length need no
padding and the RNN never sees a filler frame. On the `delta` view every step is a pair of
consecutive frames instead (what changed), and a run of T faces is T - 1 steps
(base_learners.inputs, kind `pair_track`). The last layer's final hidden state (both directions
when bidirectional) feeds a dropout and a one-logit head; `logit_offset` is train.py's prior
correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence

from features.common import ConfigError, Registry

SEQUENCE_LEARNERS = ("sequence",)  # registry names whose input is a face track (base_learners.inputs)
RNNS: Registry[type[nn.Module]] = Registry("rnn")
RNNS.register("gru")(nn.GRU)
RNNS.register("lstm")(nn.LSTM)


@dataclass
class SequenceConfig:
    """The recurrent part of a `sequence` learner (LearnerConfig.sequence); the encoder is built
    from the learner's own settings (variant, input size, view, pretrained). The learner's
    `weights_path` is a whole sequence learner's checkpoint; `encoder_weights` fills the encoder
    alone (a frame learner's checkpoint or an ImageNet state dict of its family)."""

    encoder: str = "meso4"  # a CNN family of the registry with an `embed` (registry.ENCODERS)
    encoder_weights: str | None = None  # a local state dict for the encoder alone
    rnn: str = "gru"  # RNNS: gru | lstm
    hidden: int = 32  # units per direction
    layers: int = 1
    bidirectional: bool = True

    def __post_init__(self) -> None:
        if self.rnn not in RNNS:
            raise ConfigError(f"sequence: unknown rnn {self.rnn!r}; valid: {', '.join(RNNS.names())}")
        if self.hidden < 1 or self.layers < 1:
            raise ConfigError(f"sequence: hidden and layers must be >= 1, got {self.hidden}, {self.layers}")


class SequenceLearner(nn.Module):
    """encoder.embed per frame -> packed GRU/LSTM over each track -> one logit per track."""

    HEAD_PREFIXES = ("out.", "logit_offset")

    def __init__(self, encoder: nn.Module, cfg: SequenceConfig, drop_rate: float):
        super().__init__()
        self.encoder = encoder
        self.directions = 2 if cfg.bidirectional else 1
        self.rnn = RNNS.get(cfg.rnn)(encoder.embed_dim, cfg.hidden, num_layers=cfg.layers,
                                     bidirectional=cfg.bidirectional, batch_first=True)
        self.dropout = nn.Dropout(drop_rate)
        self.out = nn.Linear(cfg.hidden * self.directions, 1)
        # added to the logit; set by training when class rebalancing shifted the prior (train.py)
        self.register_buffer("logit_offset", torch.zeros(()))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        sizes = [int(n) for n in lengths]
        if sum(sizes) != len(x) or min(sizes, default=1) < 1:
            raise ValueError(f"sequence learner: {len(x)} frames for tracks of lengths {sizes[:8]}...")
        frames = self.encoder.embed(x)
        packed = pack_sequence(list(torch.split(frames, sizes)), enforce_sorted=False)
        _, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):  # LSTM: (h_n, c_n)
            hidden = hidden[0]
        last = hidden[-self.directions:]  # (directions, B, hidden), in the input's track order
        z = last.transpose(0, 1).reshape(len(sizes), -1)
        return self.out(self.dropout(z)).squeeze(-1) + self.logit_offset
