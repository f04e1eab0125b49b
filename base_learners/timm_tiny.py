"""Narrow ResNeXt and Xception variants for the CPU demo, registered with timm.

Why: trained from scratch on a two-core CPU, timm's lightest published ResNeXt (resnext26ts, 8.3M
parameters) and Xception (legacy_xception, 20.8M) get one or two epochs over ~1,000 faces in the
demo's ten-minute budget and did not learn (video AUC 0.50-0.53). The same architectures at a
fraction of the width train 5-15x faster per image and do learn in 8-12 epochs. They are built from
timm's own classes (`ResNet` with grouped bottlenecks, `XceptionAligned`) and registered under
timm's model registry, so they are created by `timm.create_model` like every other variant and go
through the same head, data config and weights-file code.

They have no published weights: `pretrained=True` is an error that says so (a local `weights_path`
still works). The EfficientNet family needs no such variant: timm ships `tinynet_e`, an
EfficientNet-B0 scaled down in width, depth and resolution.
"""

from __future__ import annotations

from functools import partial

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, register_model
from timm.models.resnet import Bottleneck, ResNet
from timm.models.xception_aligned import XceptionAligned
from torch import nn

DEMO_INPUT_SIZE = 64  # px: what the demo profile crops faces to
RESNEXT_TINY_WIDTHS = (16, 32, 64, 128)  # bottleneck widths of the 4 stages (resnext50: 64..512)
RESNEXT_TINY_CARDINALITY = 8  # groups of the 3x3 conv (resnext50: 32)
RESNEXT_TINY_BASE_WIDTH = 4  # channels per group at width 64, as in "32x4d"
XCEPTION_TINY_WIDTH = 32  # entry-flow width unit (xception41: 128, 256, 728)
XCEPTION_BN_EPS = 1e-3  # as timm's aligned Xceptions


def _cfg(**overrides) -> dict:
    """timm's per-model data config: ImageNet normalisation, the demo input size, no weight URL."""
    cfg = dict(url="", num_classes=1000, input_size=(3, DEMO_INPUT_SIZE, DEMO_INPUT_SIZE),
               pool_size=(2, 2), crop_pct=1.0, interpolation="bilinear",
               mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, classifier="fc")
    cfg.update(overrides)
    return cfg


# read by timm's register_model (it looks up `default_cfgs` in the registering module)
default_cfgs = {
    "resnext_tiny": _cfg(first_conv="conv1"),
    "xception_tiny": _cfg(first_conv="stem.0.conv", classifier="head.fc"),
}


def _no_weights(variant: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(
            f"{variant!r} is fakestack's narrow CPU-demo variant and has no published weights; "
            "set pretrained: false, or give weights_path to a local state dict"
        )


@register_model
def resnext_tiny(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNeXt with one grouped bottleneck per stage (depth 14), cardinality 8, widths 16-128."""
    _no_weights("resnext_tiny", pretrained)
    args = dict(block=Bottleneck, layers=(1, 1, 1, 1), cardinality=RESNEXT_TINY_CARDINALITY,
                base_width=RESNEXT_TINY_BASE_WIDTH,
                channels=RESNEXT_TINY_WIDTHS)
    return build_model_with_cfg(ResNet, "resnext_tiny", pretrained, **dict(args, **kwargs))


@register_model
def xception_tiny(pretrained: bool = False, **kwargs) -> XceptionAligned:
    """Aligned Xception with the entry, middle and exit flows of xception41 at a quarter width,
    and one middle-flow block instead of eight."""
    _no_weights("xception_tiny", pretrained)
    w = XCEPTION_TINY_WIDTH
    block_cfg = [
        # entry flow (the stem gives 64 channels)
        dict(in_chs=64, out_chs=w, stride=2),
        dict(in_chs=w, out_chs=2 * w, stride=2),
        dict(in_chs=2 * w, out_chs=4 * w, stride=2),
        # middle flow
        dict(in_chs=4 * w, out_chs=4 * w, stride=1),
        # exit flow
        dict(in_chs=4 * w, out_chs=(4 * w, 6 * w, 6 * w), stride=2),
        dict(in_chs=6 * w, out_chs=(8 * w, 8 * w, 12 * w), stride=1, no_skip=True, start_with_relu=False),
    ]
    args = dict(block_cfg=block_cfg, norm_layer=partial(nn.BatchNorm2d, eps=XCEPTION_BN_EPS))
    return build_model_with_cfg(XceptionAligned, "xception_tiny", pretrained, **dict(args, **kwargs))
