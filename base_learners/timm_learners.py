"""ImageNet CNN families (ResNeXt, Xception, EfficientNet) built with `timm.create_model`.

The DFDC leaders fine-tuned exactly these families; timm gives each one with a single-logit head.
A thin wrapper squeezes the (B, 1) output to (B,) and carries the prior-correction offset, so every
learner in the registry has the same output contract as the MesoNets.

Light variants (demo profile, CPU, ~64 px): efficientnet_b0 (4.0M params), resnext26ts (8.3M) and,
for Xception, legacy_xception (20.8M): the lightest model of timm's Xception family (the aligned
xception41/41p/65/71 are all larger), it is the original Chollet Xception used in FaceForensics++
and by DFDC entrants, and it runs at 64 px (its two unpadded stem convs leave a 2x2 final map).
"""

from __future__ import annotations

import timm
import torch
from torch import nn

# full profile: the DFDC-scale models named in DESIGN.md
DEFAULT_VARIANTS = {
    "resnext": "resnext50_32x4d",
    "xception": "legacy_xception",
    "efficientnet": "tf_efficientnet_b4",
}
# demo profile / tests: the lightest real member of each family (see the module docstring)
LIGHT_VARIANTS = {
    "resnext": "resnext26ts",
    "xception": "legacy_xception",
    "efficientnet": "efficientnet_b0",
}


class PretrainedUnavailableError(RuntimeError):
    """timm's pretrained weights could not be fetched (no internet, no cache)."""


class TimmLearner(nn.Module):
    """A timm model with one output unit, returning logits of shape (B,)."""

    def __init__(self, net: nn.Module, variant: str):
        super().__init__()
        self.net = net
        self.variant = variant
        # added to the logit; set by training when class rebalancing shifted the prior (train.py)
        self.register_buffer("logit_offset", torch.zeros(()))

    def head_prefixes(self) -> tuple[str, ...]:
        """State-dict key prefixes (relative to `net`) of the classifier: may differ in a file."""
        head = self.net.get_classifier()
        names = [name for name, mod in self.net.named_modules() if mod is head]
        return tuple(f"{name}." for name in names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1) + self.logit_offset


def create_timm(variant: str, pretrained: bool, drop_rate: float) -> tuple[TimmLearner, dict]:
    """Build `variant` with one logit; returns the learner and timm's resolved data config.

    With `pretrained`, timm downloads the ImageNet weights (the head is re-initialised for one
    class). A failed download becomes PretrainedUnavailableError with the two ways out, instead of a
    deep hub/URL traceback.
    """
    if variant not in timm.list_models():
        raise ValueError(
            f"unknown timm variant {variant!r}; see timm.list_models() "
            f"(e.g. {sorted(LIGHT_VARIANTS.values())})"
        )
    try:
        net = timm.create_model(
            variant, pretrained=pretrained, num_classes=1, drop_rate=drop_rate
        )
    except (OSError, RuntimeError, ValueError) as err:
        if not pretrained:
            raise
        raise PretrainedUnavailableError(
            f"pretrained weights for {variant!r} are unreachable ({type(err).__name__}: {err}); "
            "set pretrained: false, or give weights_path to a local state dict"
        ) from err
    data_cfg = timm.data.resolve_data_config({}, model=net)
    return TimmLearner(net, variant), data_cfg
