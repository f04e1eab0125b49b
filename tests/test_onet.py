"""The face-pretrained `onet` learner (base_learners.onet): contract, shipped weights, input size."""

from __future__ import annotations

import pytest
import torch
from facenet_pytorch.models.mtcnn import ONet

from base_learners.onet import ONET_EMBED_DIM, ONET_HEADS, ONET_INPUT_SIZE
from base_learners.registry import LearnerConfig, build_learner, load_weights, target_layer

SIZE = ONET_INPUT_SIZE


def onet(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_learner(LearnerConfig("onet", input_size=SIZE, **kw))


def test_embed_fresh_head_and_target_layer():
    """(The registry's contract is tested with every learner in test_learners.py.)"""
    model = onet(pretrained=False, drop_rate=0.5).eval()
    x = torch.randn(4, 3, SIZE, SIZE)
    with torch.no_grad():
        c, emb = model(x), model.embed(x)
    assert emb.shape == (4, ONET_EMBED_DIM) == (4, model.embed_dim)
    assert c.abs().max() < 1.0, "the fresh head starts near zero"
    assert isinstance(target_layer(model), torch.nn.PReLU)


def test_pretrained_trunk_is_the_shipped_onet():
    model = onet(pretrained=True)
    shipped = ONet(pretrained=True).state_dict()
    trunk = model.trunk.state_dict()
    heads = {k for k in shipped if k.split(".")[0] in ONET_HEADS}
    assert heads and set(trunk) == set(shipped) - heads  # the heads are gone, nothing else
    assert all(torch.equal(trunk[k], shipped[k]) for k in trunk)
    scratch = onet(pretrained=False).trunk.state_dict()
    assert not torch.equal(scratch["conv1.weight"], shipped["conv1.weight"])


@pytest.mark.parametrize("size", [32, 64])
def test_other_input_sizes_are_refused(size):
    with pytest.raises(ValueError, match="48"):
        build_learner(LearnerConfig("onet", input_size=size))
    with pytest.raises(ValueError, match="48x48"):
        onet().embed(torch.zeros(1, 3, size, size))


def test_own_checkpoint_round_trip(tmp_path):
    trained = onet(pretrained=False)
    trained.logit_offset.fill_(0.3)
    torch.save(trained.state_dict(), tmp_path / "unit.pt")
    loaded = onet(pretrained=True)
    load_weights(loaded, tmp_path / "unit.pt")
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), trained.eval()(x))


def test_onet_encodes_frames_for_the_sequence_learner():
    from base_learners.sequence import SequenceConfig

    torch.manual_seed(0)
    model = build_learner(LearnerConfig("sequence", input_size=SIZE, sequence=SequenceConfig(encoder="onet")))
    assert model.variant == "onet+gru"
    assert model(torch.randn(5, 3, SIZE, SIZE), torch.tensor([2, 3])).shape == (2,)
