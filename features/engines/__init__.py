"""Where the parallel stages run: a local process pool (default) or a Ray cluster.

Two stages fan out: the face stage (one task per batch of videos) and level 0 (one task per
learner x fold unit). Both only ever write content-keyed, atomic files (the face cache, the unit
folders) and return small rows, so the engine decides where work runs and nothing else: a run may
switch engines between attempts and resume, and both engines end with the same tables.

An `Engine` maps a module-level function over tasks and yields results in completion order. The
caller names an initializer that builds per-process state once (an MTCNN, the frames table), the
modules a forkserver should preload, and per task the resources a Ray scheduler needs (CPUs, a
GPU share); the local pool uses its process count instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from features.common import ConfigError, Registry
from features.engines.base import Resources
from features.faces.pool import process_map

__all__ = ["ENGINES", "LOCAL", "LOCAL_ENGINE", "RAY", "Engine", "Resources", "check_engine"]

LOCAL, RAY = "local", "ray"


@dataclass(frozen=True)
class Engine:
    """`name` from ENGINES; `address` of a Ray cluster to join (None: RAY_ADDRESS, else a local
    Ray is started); `workdir` must be seen by every node (checked when a Ray engine starts)."""

    name: str = LOCAL
    address: str | None = None
    workdir: Path | None = None
    local_cpus: int | None = None  # a local Ray's CPUs (None: every core)

    @property
    def distributed(self) -> bool:
        return self.name != LOCAL

    def start(self) -> None:
        """Connect now (a Ray engine), so a wrong address fails before any work is done."""
        ENGINES.get(self.name).start(self)

    def map(self, fn: Callable[..., Any], tasks: list[tuple], workers: int, initializer: Callable[..., None],
            initargs: tuple, preload: list[str], resources: list[Resources] | None = None,
            batch: int = 1) -> Iterator[Any]:
        """`fn(*task)` for every task, in completion order. `workers`: the local pool's processes;
        `resources`: per task, for Ray; `batch`: tasks per Ray task (a face task of several videos
        amortises its start and its detector); results are yielded one per task either way."""
        if resources is not None and len(resources) != len(tasks):
            raise ValueError(f"{len(resources)} resource requests for {len(tasks)} tasks")
        return ENGINES.get(self.name).map(self, fn, tasks, workers, initializer, initargs, preload,
                                          resources, batch)

    def wants_gpu(self, device: str) -> bool:
        """Does a task for torch device `device` need a GPU from the scheduler?"""
        return ENGINES.get(self.name).wants_gpu(self, device)


class _Local:
    """The default: a forkserver process pool on this machine (features.faces.pool)."""

    @staticmethod
    def start(engine: Engine) -> None:
        pass

    @staticmethod
    def map(engine, fn, tasks, workers, initializer, initargs, preload, resources, batch) -> Iterator[Any]:
        return process_map(fn, tasks, workers, initializer, initargs, preload)

    @staticmethod
    def wants_gpu(engine: Engine, device: str) -> bool:
        return device.startswith("cuda")


class _Ray:
    """Ray tasks (features.engines.ray_cluster), imported only when asked for: Ray is heavy to import."""

    @staticmethod
    def start(engine: Engine) -> None:
        from features.engines import ray_cluster

        ray_cluster.connect(engine.address, engine.workdir, engine.local_cpus)

    @staticmethod
    def map(engine, fn, tasks, workers, initializer, initargs, preload, resources, batch) -> Iterator[Any]:
        from features.engines import ray_cluster

        _Ray.start(engine)
        return ray_cluster.ray_map(fn, tasks, initializer, initargs, resources or [Resources()] * len(tasks),
                                  batch)

    @staticmethod
    def wants_gpu(engine: Engine, device: str) -> bool:
        from features.engines import ray_cluster

        _Ray.start(engine)
        return ray_cluster.wants_gpu(device)


ENGINES: Registry[Any] = Registry("engine")
ENGINES.register(LOCAL)(_Local)
ENGINES.register(RAY)(_Ray)
LOCAL_ENGINE = Engine()


def check_engine(name: str) -> None:
    """An unknown engine name is a config error listing the valid ones."""
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}; valid: {', '.join(ENGINES.names())}")
