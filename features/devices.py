"""Torch devices named in configs: `auto`, `cpu`, `cuda`, `cuda:N`.

Why one module: the face stage, training and scoring each take a device from their config, and a
missing GPU must be refused once, before any work, with one line (not a CUDA traceback from every
face worker or unit)."""

from __future__ import annotations

import torch

from features.common import ConfigError

AUTO = "auto"
CPU = "cpu"
CUDA = "cuda"


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else as torch understands it."""
    if name == AUTO:
        return torch.device(CUDA if torch.cuda.is_available() else CPU)
    return torch.device(name)


def check_device(device: str | None) -> None:
    """Refuse a device this machine cannot run on (a bad name, CUDA without a GPU or an index past
    the last one), before any work: ConfigError, one line. `auto` and None always pass."""
    if not device or device == AUTO:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device {device!r} is not a torch device (auto, cpu, cuda, cuda:N)") from None
    if dev.type == CUDA:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (dev.index or 0) >= count:
            raise ConfigError(f"device {device!r} is not available on this machine ({count} CUDA devices); "
                              "use device=cpu")
    elif dev.type != CPU:
        raise ConfigError(f"device {device!r}: only cpu and cuda devices are supported")
