"""A face-pretrained level-0 learner: MTCNN's O-Net trunk with a fresh one-logit head.

Why: on real DFDC crops the stack of from-scratch learners was limited by errors its learners
share, and pretrained weights were the lever left, but nothing can be downloaded on the CPU
machines the `real` profile runs on. One network trained on faces ships inside a dependency:
facenet-pytorch's MTCNN carries its O-Net weights (`facenet_pytorch/data/onet.pt`, a local file, so
`pretrained: true` works offline). The O-Net refines face boxes: a small CNN on 48x48 RGB faces
(four convolutions with PReLU, a 256-unit dense layer `prelu5`, then heads for face probability,
box and landmarks). Its features were learnt to tell faces from non-faces and to place landmarks,
not from these crops' labels, so its errors come from a different place than the MesoNets'
(figures: docs/results.md, real DFDC crops).

The trunk is facenet-pytorch's own ONet module, not a copy: its three heads are replaced by
identities, so `ONet.forward` (with its Caffe-order flatten before the dense layer, which the
converted weights need) returns the prelu5 features unchanged. A dropout and a new Linear(256, 1)
read them. The dense layer fixes the input at 48 px (1152 = 128 x 3 x 3 inputs): any other
`input_size` is refused when the learner is built. MTCNN feeds the O-Net (pixel - 127.5) / 128 on
RGB pixels; `mean` / `std` are that normalisation on the [0, 1] pixels train.py hands over (the
shipped O-Net gives the Kaggle DFDC crops, resized to 48 px this way, face probability > 0.999: the
orientation and normalisation match what it was trained on).
"""

from __future__ import annotations

import torch
from facenet_pytorch.models.mtcnn import ONet
from torch import nn

from base_learners.train import PIXEL_MAX

ONET_INPUT_SIZE = 48  # px: the O-Net's dense layer reads a 3x3x128 map, i.e. 48x48 inputs
ONET_EMBED_DIM = 256  # width of the dense layer prelu5
ONET_HEADS = ("dense6_1", "softmax6_1", "dense6_2", "dense6_3")  # face prob, box, landmarks
MTCNN_PIXEL_CENTRE = 127.5  # facenet_pytorch detect_face: (pixel - 127.5) * 0.0078125
MTCNN_PIXEL_SCALE = 128.0
ONET_MEAN = (MTCNN_PIXEL_CENTRE / PIXEL_MAX,) * 3
ONET_STD = (MTCNN_PIXEL_SCALE / PIXEL_MAX,) * 3
HEAD_INIT_STD = 0.01  # the new classifier starts near zero, as timm_learners.HEAD_INIT_STD


def onet_trunk(pretrained: bool) -> nn.Module:
    """facenet-pytorch's ONet (its shipped weights when `pretrained`, else PyTorch's default
    init) with the three heads replaced by identities: its forward returns prelu5 three times."""
    net = ONet(pretrained=pretrained)
    for name in ONET_HEADS:
        setattr(net, name, nn.Identity())
    return net


class ONetLearner(nn.Module):
    """O-Net trunk -> 256-d prelu5 features -> dropout -> one logit (+ logit_offset)."""

    # allowed to be missing from a weights file: the classifier and the prior-correction offset
    HEAD_PREFIXES = ("out.", "logit_offset")

    def __init__(self, input_size: int = ONET_INPUT_SIZE, pretrained: bool = True, drop_rate: float = 0.2):
        super().__init__()
        if input_size != ONET_INPUT_SIZE:
            raise ValueError(
                f"onet: the O-Net's dense layer fixes input_size at {ONET_INPUT_SIZE} px; got {input_size}"
            )
        self.trunk = onet_trunk(pretrained)
        self.dropout = nn.Dropout(drop_rate)
        self.out = nn.Linear(ONET_EMBED_DIM, 1)
        nn.init.normal_(self.out.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.out.bias)
        # added to the logit; set by training when class rebalancing shifted the prior (train.py)
        self.register_buffer("logit_offset", torch.zeros(()))

    @property
    def embed_dim(self) -> int:
        return ONET_EMBED_DIM

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 256): the prelu5 features the classifier reads (a sequence learner's per-frame
        features, base_learners.sequence)."""
        if tuple(x.shape[-2:]) != (ONET_INPUT_SIZE, ONET_INPUT_SIZE):
            raise ValueError(f"onet takes {ONET_INPUT_SIZE}x{ONET_INPUT_SIZE} inputs, got {tuple(x.shape[-2:])}")
        features, _, _ = self.trunk(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.embed(x))).squeeze(-1) + self.logit_offset
