"""MesoNet (Afchar et al., 2018, "MesoNet: a Compact Facial Video Forgery Detection Network").

Written here from the paper (and its reference Keras code) rather than imported: the two networks
are tiny (a few thousand weights), so they train in seconds on a CPU and give the stack a level-0
learner whose errors differ from the big ImageNet CNNs (mesoscopic texture, not semantics).

Block layout follows the paper: convolution -> ReLU -> batch norm -> max-pool. The paper feeds
256 px faces, giving an 8x8x16 map before the dense layers; here the flatten size is computed at
build time from `input_size`, so the same code runs at the demo's 64 px and the paper's 256 px. The
output is one logit (the paper's sigmoid is folded into BCEWithLogits during training).
"""

from __future__ import annotations

import torch
from torch import nn

MESO_HIDDEN_UNITS = 16  # the paper's dense layer width
LEAKY_SLOPE = 0.1  # the paper's LeakyReLU slope after the dense layer
MIN_INPUT_SIZE = 32  # total pooling is 2*2*2*4 = 32: below this the last map is empty
# Normalisation: the paper rescales by 1/255; centring to [-1, 1] is equivalent up to the first
# conv's bias and keeps the first ReLU from seeing only positive inputs.
MESO_MEAN = (0.5, 0.5, 0.5)
MESO_STD = (0.5, 0.5, 0.5)


def _conv_block(c_in: int, c_out: int, kernel: int, pool: int) -> nn.Sequential:
    """Conv (same padding) -> ReLU -> BN -> MaxPool, as in the paper's Keras code."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(c_out),
        nn.MaxPool2d(pool, pool, ceil_mode=True),  # ceil = Keras padding='same' pooling
    )


class InceptionLayer(nn.Module):
    """The paper's InceptionLayer(a, b, c, d): four branches concatenated on channels.

    1x1 (a); 1x1 -> 3x3 (b); 1x1 -> 3x3 dilation 2 (c); 1x1 -> 3x3 dilation 3 (d). Dilated branches
    widen the receptive field without pooling, which the paper credits for catching blending seams.
    """

    def __init__(self, c_in: int, a: int, b: int, c: int, d: int):
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(c_in, a, 1), nn.ReLU(inplace=True))
        self.b2 = self._dilated(c_in, b, dilation=1)
        self.b3 = self._dilated(c_in, c, dilation=2)
        self.b4 = self._dilated(c_in, d, dilation=3)
        self.out_channels = a + b + c + d

    @staticmethod
    def _dilated(c_in: int, width: int, dilation: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, width, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


def _inception_block(c_in: int, a: int, b: int, c: int, d: int, pool: int) -> nn.Sequential:
    layer = InceptionLayer(c_in, a, b, c, d)
    return nn.Sequential(
        layer, nn.BatchNorm2d(layer.out_channels), nn.MaxPool2d(pool, pool, ceil_mode=True)
    )


class _MesoBase(nn.Module):
    """Shared head: flatten -> dropout -> dense 16 -> LeakyReLU(0.1) -> dropout -> 1 logit."""

    # allowed to be missing from a weights file: the classifier and the prior-correction offset
    HEAD_PREFIXES = ("out.", "logit_offset")

    def _build_head(self, input_size: int, drop_rate: float) -> None:
        if input_size < MIN_INPUT_SIZE:
            raise ValueError(
                f"{type(self).__name__} needs input_size >= {MIN_INPUT_SIZE}, got {input_size}"
            )
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, 3, input_size, input_size)).numel()
        self.dropout1 = nn.Dropout(drop_rate)
        self.fc = nn.Linear(n_flat, MESO_HIDDEN_UNITS)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.dropout2 = nn.Dropout(drop_rate)
        self.out = nn.Linear(MESO_HIDDEN_UNITS, 1)
        # added to the logit; set by training when class rebalancing shifted the prior (train.py)
        self.register_buffer("logit_offset", torch.zeros(()))

    @property
    def embed_dim(self) -> int:
        return self.fc.out_features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim): the dense layer's activations, what the classifier reads (a sequence
        learner's per-frame features, base_learners.sequence)."""
        y = torch.flatten(self.features(x), 1)
        return self.dropout2(self.act(self.fc(self.dropout1(y))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(x)).squeeze(-1) + self.logit_offset


class Meso4(_MesoBase):
    """Meso-4: conv blocks 8 (3x3), 8 (5x5), 16 (5x5), 16 (5x5); pooling 2, 2, 2, 4."""

    def __init__(self, input_size: int = 256, drop_rate: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(3, 8, 3, 2),
            _conv_block(8, 8, 5, 2),
            _conv_block(8, 16, 5, 2),
            _conv_block(16, 16, 5, 4),
        )
        self._build_head(input_size, drop_rate)


class MesoInception4(_MesoBase):
    """MesoInception-4: Inception(1,4,4,2), Inception(2,4,4,2), then two 16-filter 5x5 blocks."""

    def __init__(self, input_size: int = 256, drop_rate: float = 0.5):
        super().__init__()
        first = _inception_block(3, 1, 4, 4, 2, pool=2)
        second = _inception_block(first[0].out_channels, 2, 4, 4, 2, pool=2)
        self.features = nn.Sequential(
            first,
            second,
            _conv_block(second[0].out_channels, 16, 5, 2),
            _conv_block(16, 16, 5, 4),
        )
        self._build_head(input_size, drop_rate)
