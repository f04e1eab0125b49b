"""ImageNet CNN families (ResNeXt, Xception, EfficientNet) built with `timm.create_model`.

The DFDC leaders fine-tuned exactly these families; timm gives each one with a single-logit head.
A thin wrapper squeezes the (B, 1) output to (B,) and carries the prior-correction offset, so every
learner in the registry has the same output contract as the MesoNets.

Light variants (demo profile, CPU, 64 px, trained from scratch): tinynet_e (timm's scaled-down
EfficientNet, 0.76M params) and fakestack's narrow resnext_tiny (1.0M) and xception_tiny (0.48M),
registered with timm in `base_learners.timm_tiny`. The lightest published members of the families
(efficientnet_b0 4.0M, resnext26ts 8.3M, legacy_xception 20.8M) only get one or two epochs in the
demo's CPU budget and stayed at chance there (video AUC 0.50-0.53); they remain a `variant:` away.

Head initialisation: every learner's single-logit classifier starts near zero (HEAD_INIT_STD).
timm's EfficientNet initialiser draws the classifier from U(-1/sqrt(n_classes), +1/sqrt(n_classes)),
which for one class is U(-1, 1) over 1,280 features: starting logits of +-20 that a short run never
recovered from (efficientnet_b0 ended with log loss 0.81 at AUC 0.51, tinynet_e's first-epoch loss
was 4.1 instead of 0.56).
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from base_learners import (
    keras_mobilenet,  # noqa: F401  (registers mobilenetv2_100_keras with timm)
    timm_tiny,  # noqa: F401  (registers resnext_tiny, xception_tiny with timm)
)

# full profile: the DFDC-scale models named in docs/design.md
DEFAULT_VARIANTS = {
    "resnext": "resnext50_32x4d",
    "xception": "legacy_xception",
    "efficientnet": "tf_efficientnet_b4",
    # the one ImageNet trunk offline: Keras's MobileNetV2 from npm's nsfwjs (base_learners.keras_mobilenet)
    "mobilenet": "mobilenetv2_100_keras",
}
# demo profile / tests: the lightest real member of each family (see the module docstring)
LIGHT_VARIANTS = {
    "resnext": "resnext_tiny",
    "xception": "xception_tiny",
    "efficientnet": "tinynet_e",
    "mobilenet": "mobilenetv2_050",
}
HEAD_INIT_STD = 0.01  # the single-logit classifier's initial weights (see the module docstring)


class PretrainedUnavailableError(RuntimeError):
    """timm's pretrained weights could not be fetched (no internet, no cache)."""


class TimmLearner(nn.Module):
    """A timm model with one output unit, returning logits of shape (B,)."""

    def __init__(self, net: nn.Module, variant: str):
        super().__init__()
        self.net = net
        head = net.get_classifier()
        nn.init.normal_(head.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(head.bias)
        self.variant = variant
        # added to the logit; set by training when class rebalancing shifted the prior (train.py)
        self.register_buffer("logit_offset", torch.zeros(()))

    def head_prefixes(self) -> tuple[str, ...]:
        """State-dict key prefixes (relative to `net`) of the classifier: may differ in a file."""
        head = self.net.get_classifier()
        names = [name for name, mod in self.net.named_modules() if mod is head]
        return tuple(f"{name}." for name in names)

    @property
    def embed_dim(self) -> int:
        return self.net.num_features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim): the pooled features the classifier reads (a sequence learner's per-frame
        features, base_learners.sequence)."""
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

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
