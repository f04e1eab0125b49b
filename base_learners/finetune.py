"""Fine-tuning a pretrained trunk: its own learning rate, and head-only epochs first.

Why: AdamW steps every weight by about the learning rate whatever its gradient's size, so a rate
that suits a fresh head rewrites a pretrained trunk within an epoch. dlib's face ResNet is the sharp
case: its batch norm is folded into fixed affine layers, nothing renormalises the activations, and
fine-tuned whole at 3e-4 or 1e-3 on real DFDC crops it fell to the constant prior (AUC 0.50-0.51),
below its own frozen trunk under a fresh head (AUC 0.64). Two standard remedies, both off by
default (`base_learners.train.TrainConfig`):

- `trunk_lr_mult`: the trunk's rate is `lr * trunk_lr_mult` (discriminative rates, as in ULMFiT);
- `head_only_epochs`: the first epochs train the head alone on the fixed trunk, then everything
  trains (linear probing then fine-tuning, Kumar et al. 2022: a random head's first gradients are
  noise that would otherwise reach the trunk).

The head is what the learner declares as such for its weights files (`HEAD_PREFIXES`, or a timm
learner's classifier under `net.`); a learner that declares none cannot use either option.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["head_prefixes", "split_head", "param_groups", "head_only", "lr_factor", "lambda_scheduler"]


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Parameter-name prefixes of the model's head (relative to the model itself)."""
    if hasattr(model, "head_prefixes"):  # a timm learner: its classifier's names inside `net`
        return tuple(f"net.{p}" for p in model.head_prefixes())
    return tuple(getattr(model, "HEAD_PREFIXES", ()))


def split_head(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(trunk, head) parameters, in the model's parameter order."""
    prefixes = head_prefixes(model)
    if not prefixes:
        name = getattr(model, "learner_name", type(model).__name__)
        raise ValueError(f"learner {name!r} declares no head (HEAD_PREFIXES), so trunk_lr_mult and "
                         "head_only_epochs cannot tell its trunk from its head")
    trunk, head = [], []
    for name, p in model.named_parameters():
        (head if name.startswith(prefixes) else trunk).append(p)
    if not head:
        raise ValueError(f"no parameter of {type(model).__name__} starts with its head prefixes {prefixes}")
    return trunk, head


def param_groups(model: nn.Module, lr: float, trunk_lr_mult: float, split: bool) -> list[dict]:
    """The optimiser's groups: one (all at `lr`) unless `split`, else trunk then head."""
    if not split:
        return [{"params": list(model.parameters()), "lr": lr}]
    trunk, head = split_head(model)
    return [{"params": trunk, "lr": lr * trunk_lr_mult}, {"params": head, "lr": lr}]


@contextmanager
def head_only(model: nn.Module, on: bool) -> Iterator[None]:
    """Within: the trunk does not train (no gradient, so no update and no weight decay; autograd
    also skips its backward pass). After: each parameter's own requires_grad as it was."""
    if not on:
        yield
        return
    trunk, _ = split_head(model)
    before = [p.requires_grad for p in trunk]
    for p in trunk:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(trunk, before):
            p.requires_grad_(flag)


def lr_factor(step: int, total: int, warmup: int, start: float, min_frac: float) -> float:
    """The schedule as a factor of each group's peak rate: linear warmup from `start`, then cosine
    down to `min_frac` (what train's single-group schedule does, for groups of different rates)."""
    if step < warmup:
        return start + (1.0 - start) * step / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_frac + (1.0 - min_frac) * 0.5 * (1.0 + math.cos(math.pi * t))


def lambda_scheduler(opt: torch.optim.Optimizer, total: int, warmup: int, start: float,
                     min_frac: float) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, start, min_frac))
