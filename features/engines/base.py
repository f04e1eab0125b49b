"""What every engine shares and a task asks of it, in a module of its own so the Ray engine can
import it without importing the package that dispatches to it (no import circle)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resources:
    """What one task needs from a Ray scheduler (the local pool runs one task per process)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
