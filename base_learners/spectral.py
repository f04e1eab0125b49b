"""A level-0 learner that is not a CNN: the face's radial amplitude spectrum and a small MLP.

Why: on real DFDC crops the MesoNets and the narrow timm nets, all convolutional and all trained
on the same pixels, make nearly the same mistakes, so a stack of them has little to combine. The
1-D azimuthal average of the log power spectrum (Durall et al. 2020, "Watch your up-convolution")
summarises how much energy each spatial frequency holds: a face that a generator rendered at a
lower resolution and blended back in lacks the high-frequency energy, or carries the periodic
peaks, of the camera's own face. It throws away where anything is on the face, which is exactly
what the CNNs learn from, so its errors come from a different place.

Per colour plane (Y, Cb, Cr) of the input: remove the mean, apply a Hann window (the crop's
border would otherwise add a cross of energy at every frequency), take the log power of the 2-D
FFT and average it over rings of equal radius (`input_size // 2` rings up to the Nyquist radius).
The profile is standardised by a batch norm and read by a one-hidden-layer MLP; the whole thing
has a few thousand weights and trains in seconds per epoch on a CPU. It follows the registry's
contract: normalised (B, 3, S, S) in, logits (B,) out, `logit_offset` buffer for train.py.
"""

from __future__ import annotations

import torch
from torch import nn

from base_learners.views import YCBCR

SPECTRUM_HIDDEN = 32  # MLP width: the profile has 3 x input_size / 2 entries
SPECTRUM_MIN_INPUT = 16  # px: below this there are too few rings to tell bands apart
POWER_EPS = 1e-8  # inside the log of the power: a zero coefficient stays finite
# [0, 1] pixels in: the spectrum needs no centring beyond its own mean removal
SPECTRUM_MEAN = (0.0, 0.0, 0.0)
SPECTRUM_STD = (1.0, 1.0, 1.0)


def ring_index(size: int) -> tuple[torch.Tensor, int]:
    """For a centred size x size spectrum: each coefficient's ring (integer radius, clipped to the
    Nyquist ring size // 2 - 1), flattened, and the number of rings."""
    n_rings = size // 2
    c = torch.arange(size, dtype=torch.float32) - size // 2
    r = torch.sqrt(c.view(-1, 1) ** 2 + c.view(1, -1) ** 2)
    return r.round().long().clamp_(max=n_rings - 1).flatten(), n_rings


def radial_profile(x: torch.Tensor, window: torch.Tensor, rings: torch.Tensor, n_rings: int) -> torch.Tensor:
    """(B, C, S, S) planes -> (B, C * n_rings) mean log power per ring."""
    b, c = x.shape[:2]
    x = (x - x.mean(dim=(-2, -1), keepdim=True)) * window
    power = torch.fft.fftshift(torch.fft.fft2(x).abs().square(), dim=(-2, -1))
    logp = torch.log(power + POWER_EPS).flatten(2)  # (B, C, S*S)
    sums = torch.zeros(b, c, n_rings, dtype=logp.dtype, device=logp.device)
    sums.index_add_(2, rings, logp)
    counts = torch.bincount(rings, minlength=n_rings).to(logp.dtype)
    return (sums / counts).flatten(1)


class SpectrumMLP(nn.Module):
    """Radial log-power profile of Y, Cb, Cr -> batch norm -> MLP -> one logit."""

    HEAD_PREFIXES = ("out.", "logit_offset")

    def __init__(self, input_size: int = 64, drop_rate: float = 0.2, hidden: int = SPECTRUM_HIDDEN):
        super().__init__()
        if input_size < SPECTRUM_MIN_INPUT:
            raise ValueError(f"SpectrumMLP needs input_size >= {SPECTRUM_MIN_INPUT}, got {input_size}")
        rings, n_rings = ring_index(input_size)
        hann = torch.hann_window(input_size, periodic=False)
        self.register_buffer("rings", rings, persistent=False)
        self.register_buffer("window", hann.view(-1, 1) * hann.view(1, -1), persistent=False)
        self.register_buffer("ycbcr", torch.tensor(YCBCR), persistent=False)
        self.n_rings = n_rings
        n_features = len(YCBCR) * n_rings
        self.norm = nn.BatchNorm1d(n_features)
        self.fc = nn.Linear(n_features, hidden)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(drop_rate)
        self.out = nn.Linear(hidden, 1)
        self.register_buffer("logit_offset", torch.zeros(()))

    def profile(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, 3 * n_rings) features the MLP reads."""
        if x.shape[-1] != self.window.shape[-1] or x.shape[-2] != self.window.shape[-2]:
            raise ValueError(f"SpectrumMLP was built for {tuple(self.window.shape)} inputs, got {tuple(x.shape[-2:])}")
        ycc = torch.einsum("oc,bchw->bohw", self.ycbcr.to(x.dtype), x.float())
        return radial_profile(ycc, self.window, self.rings, self.n_rings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.act(self.fc(self.norm(self.profile(x)))))
        return self.out(y).squeeze(-1) + self.logit_offset
