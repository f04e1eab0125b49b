"""Fine-tuning options: the trunk's own rate, head-only epochs first, and the schedule per group."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from base_learners.finetune import head_prefixes, lr_factor, param_groups, split_head
from base_learners.train import WARMUP_START_FACTOR, TrainConfig, _make_scheduler, fit
from features.common import ConfigError
from tests.test_train import NO_AUG, learner, toy


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def moved(a: dict, b: dict, prefixes: tuple[str, ...], head: bool) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a if k.startswith(prefixes) == head)


def test_head_only_epochs_keep_the_trunk_then_train_it():
    crops, labels, groups = toy()
    model = learner("meso4")
    prefixes = head_prefixes(model)
    states = [snapshot(model)]
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-2, augment=NO_AUG, device="cpu", head_only_epochs=1)
    fit(model, crops, labels, groups, cfg, on_epoch=lambda e, _: states.append(snapshot(model)), progress=False)
    assert moved(states[0], states[1], prefixes, head=True)  # epoch 1: the head learnt
    assert not moved(states[0], states[1], prefixes, head=False)  # ... and the trunk is untouched
    assert moved(states[1], states[2], prefixes, head=False)  # epoch 2: the trunk trains
    assert all(p.requires_grad for p in model.parameters())  # flags restored


@pytest.mark.parametrize("name", ["meso4", "efficientnet"])  # a timm learner's head lies in `net`
def test_trunk_rate_is_a_fraction_of_the_heads(name):
    model = learner(name)
    groups = param_groups(model, 1e-2, 0.1, split=True)
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-2])
    n = sum(len(g["params"]) for g in groups)
    assert n == len(list(model.parameters())) and all(len(g["params"]) for g in groups)
    opt = torch.optim.AdamW(groups, lr=1e-2)
    cfg = TrainConfig(epochs=1, lr=1e-2, warmup_frac=0.2, min_lr_frac=0.05, trunk_lr_mult=0.1)
    sched = _make_scheduler(opt, cfg, 20)
    rates = []
    for _ in range(20):
        rates.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    ratio = np.array([t / h for t, h in rates])
    np.testing.assert_allclose(ratio, 0.1, rtol=1e-9)  # the trunk keeps its fraction all the way
    assert max(h for _, h in rates) == pytest.approx(1e-2)


def test_the_group_schedule_is_the_single_group_schedule():
    """lr_factor (for groups of different rates) reproduces torch's warmup + cosine of one group."""
    total, cfg = 50, TrainConfig(epochs=1, lr=3e-3, warmup_frac=0.1, min_lr_frac=0.01)
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = _make_scheduler(opt, cfg, total)
    for step in range(total):
        want = cfg.lr * lr_factor(step, total, 5, WARMUP_START_FACTOR, cfg.min_lr_frac)
        assert opt.param_groups[0]["lr"] == pytest.approx(want, rel=1e-6)
        opt.step()
        sched.step()


def test_a_learner_without_a_declared_head_is_refused():
    with pytest.raises(ValueError, match="declares no head"):
        split_head(nn.Sequential(nn.Linear(2, 1)))


@pytest.mark.parametrize("bad", [dict(trunk_lr_mult=0.0), dict(head_only_epochs=3), dict(head_only_epochs=-1)])
def test_bad_fine_tuning_settings_are_named(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        TrainConfig(epochs=3, **bad)


def test_defaults_stay_out_of_unit_keys():
    from features.common import result_dict

    assert {"trunk_lr_mult", "head_only_epochs"}.isdisjoint(result_dict(TrainConfig()))
    assert result_dict(TrainConfig(trunk_lr_mult=0.1))["trunk_lr_mult"] == 0.1
