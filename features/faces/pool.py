"""One way to run CPU-bound stages in worker processes (face extraction, level-0 units).

Why processes, and why forkserver: torch's float results differ in the last bits between intra-op
thread counts, so parallelism that must not change a result comes from single-threaded processes,
not threads. Forking after torch has started its thread pools can deadlock, and spawn re-imports
torch (seconds) in every worker; a forkserver that preloads the heavy modules forks clean, warm
workers.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterable, Iterator

START_METHOD = "forkserver"


def n_cores() -> int:
    """Cores this process may use (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def n_workers(wanted: int, n_tasks: int) -> int:
    """Processes to start: `wanted` (0 = one per core), never more than there are tasks."""
    return max(1, min(wanted if wanted > 0 else n_cores(), n_tasks))


def process_map(
    fn: Callable[..., Any],
    tasks: Iterable[tuple],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple,
    preload: list[str],
) -> Iterator[Any]:
    """Yield `fn(*task)` for every task, in completion order, from `workers` processes.

    `fn` and `initializer` must be module-level functions of a module in `preload`. A worker's
    exception is re-raised here; on any exception (or Ctrl-C) queued tasks are cancelled and running
    ones finish, so whatever they write to a cache is complete.
    """
    ctx = multiprocessing.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        ctx.set_forkserver_preload(preload)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer, initargs=initargs) as pool:
        futures = [pool.submit(fn, *task) for task in tasks]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
