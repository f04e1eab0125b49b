"""Registry sweep: every level-0 learner builds, keeps the output contract, loads weights safely."""

from __future__ import annotations

from dataclasses import replace

import pytest
import timm
import timm.models._builder as timm_builder
import torch

from base_learners.dlib_resnet import CHIP_SIZE
from base_learners.onet import ONET_INPUT_SIZE
from base_learners.registry import LEARNERS, LearnerConfig, build_learner
from base_learners.timm_learners import DEFAULT_VARIANTS, LIGHT_VARIANTS, PretrainedUnavailableError

ALL = ["meso4", "mesoinception4", "resnext", "xception", "efficientnet", "mobilenet"]
SIZE = 64  # the demo input size; the MesoNets' pooling needs >= 32


def light(name: str, **kw) -> LearnerConfig:
    return LearnerConfig(name=name, variant=LIGHT_VARIANTS.get(name), input_size=SIZE, **kw)


NON_CNN = ["spectrum"]  # base_learners.spectral (issue 18)
TEMPORAL = ["sequence"]  # base_learners.sequence (issue 16): its contract is tested in test_temporal.py
# fixed input sizes: base_learners.onet (48 px; more in test_onet.py), base_learners.dlib_resnet
# (150 px; more in test_landmarks.py)
FIXED_INPUT = {"onet": ONET_INPUT_SIZE, "dlib_resnet": CHIP_SIZE}


def test_registry_names():
    assert LEARNERS.names() == sorted(ALL + NON_CNN + TEMPORAL + list(FIXED_INPUT))


@pytest.mark.parametrize("name", ALL + NON_CNN + list(FIXED_INPUT))
def test_learner_contract(name):
    torch.manual_seed(0)
    size = FIXED_INPUT.get(name, SIZE)
    model = build_learner(replace(light(name, drop_rate=0.5), input_size=size))
    assert model.input_size == size and len(model.mean) == 3 and len(model.std) == 3
    x = torch.randn(4, 3, size, size)
    model.train()
    a, b = model(x), model(x)
    assert a.shape == (4,) and torch.isfinite(a).all()
    assert not torch.equal(a, b), "dropout should make train-mode passes differ"
    model.eval()
    with torch.no_grad():
        c, d = model(x), model(x)
    assert c.shape == (4,) and torch.isfinite(c).all() and torch.equal(c, d)


def test_meso_other_input_size():
    """Flatten size follows input_size: the paper's 256 px and an odd size both work."""
    for size in (96, 256):
        model = build_learner(LearnerConfig("mesoinception4", input_size=size)).eval()
        assert model(torch.randn(2, 3, size, size)).shape == (2,)


@pytest.mark.parametrize("family", sorted(DEFAULT_VARIANTS))
def test_full_variants_build(family):
    model = build_learner(LearnerConfig(family))
    assert model.variant == DEFAULT_VARIANTS[family]
    assert model.net.get_classifier().out_features == 1


def test_normalisation_from_timm():
    assert build_learner(light("efficientnet")).mean == pytest.approx((0.485, 0.456, 0.406))
    legacy = build_learner(LearnerConfig("xception", variant="legacy_xception", input_size=SIZE))
    assert legacy.mean == pytest.approx((0.5, 0.5, 0.5))


@pytest.mark.parametrize("family", sorted(LIGHT_VARIANTS))
def test_timm_head_starts_near_zero(family):
    """A fresh single-logit head predicts near the middle, whatever timm's initialiser does for
    1000-class heads (EfficientNet's draws U(-1, 1) for one class: logits of +-20 at the start)."""
    torch.manual_seed(0)
    model = build_learner(light(family)).eval()
    with torch.no_grad():
        logits = model(torch.rand(8, 3, SIZE, SIZE) * 2 - 1)
    assert logits.abs().max() < 1.0


def test_demo_variants_registered_with_timm():
    """The narrow demo variants are timm models: listed, built by create_model, weightless."""
    for variant in ("resnext_tiny", "xception_tiny"):
        assert variant in timm.list_models()
        assert timm.create_model(variant, num_classes=1)(torch.randn(1, 3, SIZE, SIZE)).shape == (1, 1)
        with pytest.raises(PretrainedUnavailableError, match="no published weights"):
            build_learner(LearnerConfig(variant.split("_")[0], variant=variant, pretrained=True))


def test_unknown_name_lists_valid():
    with pytest.raises(KeyError) as err:
        build_learner(LearnerConfig("mesonet9"))
    for name in ALL:
        assert name in str(err.value)


def test_pretrained_unreachable_is_clear(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    for fn in ("load_state_dict_from_hf", "load_state_dict_from_url", "download_cached_file"):
        monkeypatch.setattr(timm_builder, fn, offline)
    with pytest.raises(PretrainedUnavailableError, match="pretrained: false.*weights_path"):
        build_learner(light("efficientnet", pretrained=True))
    with pytest.raises(ValueError, match="pretrained"):
        build_learner(LearnerConfig("meso4", pretrained=True))


@pytest.mark.parametrize("name", ["meso4", "efficientnet"])
def test_weights_path_round_trip(name, tmp_path):
    torch.manual_seed(0)
    src = build_learner(light(name)).eval()
    with torch.no_grad():
        src.logit_offset.fill_(0.25)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    torch.manual_seed(1)
    dst = build_learner(light(name, weights_path=str(tmp_path / "w.pt"))).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_weights_path_raw_timm_with_other_head(tmp_path):
    """An ImageNet-style file (no wrapper prefix, 1000-class head) loads; the head stays fresh."""
    torch.manual_seed(0)
    raw = timm.create_model(LIGHT_VARIANTS["efficientnet"], num_classes=1000)
    torch.save(raw.state_dict(), tmp_path / "imagenet.pt")
    model = build_learner(light("efficientnet", weights_path=str(tmp_path / "imagenet.pt")))
    assert torch.equal(model.net.conv_stem.weight, raw.conv_stem.weight)


def test_weights_path_wrong_architecture(tmp_path):
    torch.save(build_learner(light("meso4")).state_dict(), tmp_path / "meso.pt")
    with pytest.raises(ValueError, match="does not fit learner 'mesoinception4'"):
        build_learner(light("mesoinception4", weights_path=str(tmp_path / "meso.pt")))
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        build_learner(light("meso4", weights_path=str(tmp_path / "nope.pt")))
