"""Ray as the engine (features.engines): the face stage and level-0 units as Ray tasks on a cluster.

    ray start --head                                # one node
    ray start --address=<head>:6379                 # every other node
    python pipelines/oof.py --set engine=ray --set ray_address=<head>:6379   # or RAY_ADDRESS=...

Without an address (and no RAY_ADDRESS) a local Ray is started with this machine's cores.

Tasks only write the content-keyed, atomic files of the face cache and unit folders and return
small rows, so a task that Ray re-runs after its worker died (up to TASK_RETRIES times) writes the
same files, and the run ends with the same tables. This needs the workdir on storage every node
sees (NFS, a shared volume): `connect` checks that each node can read a file the driver has just
written there and says which node cannot.

Per-process state (an MTCNN, the frames table) is built by the caller's initializer once per Ray
worker process and reused by its later tasks, as in the local pool.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from features.common import ConfigError
from features.engines.base import Resources

TASK_RETRIES = 3  # re-runs of a task whose worker or node died (application errors are not retried)
CONNECT_TIMEOUT_S = 5.0  # an unreachable cluster address fails within this, not after Ray's minutes
DEFAULT_RAY_PORT = 6379
LOCAL_ADDRESS = "local"  # Ray's own: a new local instance (never a cluster found under /tmp/ray)
AUTO_ADDRESSES = ("auto", LOCAL_ADDRESS)  # Ray's own: the cluster on this machine, or a new local one
VISIBILITY_FILE = ".ray-visibility-{}"

_STATE: dict[str, Any] = {"key": None}  # per Ray worker process: which initializer ran last
_CHECKED: set[str] = set()  # workdirs this driver has seen every node read


def _host_port(address: str) -> tuple[str, int]:
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    if not parts.hostname:
        raise ConfigError(f"ray_address {address!r} is not host:port (e.g. 10.0.0.1:6379) or ray://host:port")
    return parts.hostname, parts.port or DEFAULT_RAY_PORT


def check_reachable(address: str) -> None:
    """Fail within CONNECT_TIMEOUT_S, with the way on, when nothing listens at `address`."""
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(
            f"cannot reach a Ray cluster at {address!r} ({host}:{port}: {err}); start one with "
            "`ray start --head` on the head node, or leave ray_address and RAY_ADDRESS unset to run "
            "a local Ray") from None


def connect(address: str | None, workdir: Path | None, local_cpus: int | None = None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS), or start a new local Ray (once per process),
    then check every node sees `workdir` (once per workdir)."""
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or LOCAL_ADDRESS
        if address not in AUTO_ADDRESSES:
            check_reachable(address)
        kwargs = {"num_cpus": local_cpus} if address == LOCAL_ADDRESS else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **kwargs)
    if workdir is not None and str(Path(workdir).resolve()) not in _CHECKED:
        check_workdir_visible(Path(workdir).resolve())
        _CHECKED.add(str(Path(workdir).resolve()))


def _can_read(path: str) -> tuple[str, bool]:
    return socket.gethostname(), Path(path).is_file()


def check_workdir_visible(workdir: Path) -> None:
    """Every alive node must read a file written here now: the cache and units live there."""
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir.resolve() / VISIBILITY_FILE.format(uuid.uuid4().hex)
    probe.write_text("fakestack")
    try:
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
        check = ray.remote(num_cpus=0)(_can_read)
        answers = ray.get([check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                           .remote(str(probe)) for node in nodes])
    finally:
        probe.unlink(missing_ok=True)
    blind = sorted(host for host, seen in answers if not seen)
    if blind:
        raise ConfigError(f"the workdir {str(workdir)!r} is not visible from Ray node(s) {blind}: with "
                          "engine=ray the workdir must be on storage every node sees (NFS, a shared volume)")


def wants_gpu(device: str) -> bool:
    """CUDA units ask for a GPU; `auto` ones too when the cluster has any."""
    return device.startswith("cuda") or (device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)


def _run_batch(key: str, initializer: Callable[..., None], initargs: tuple, fn: Callable[..., Any],
               tasks: list[tuple]) -> list[Any]:
    """One Ray task: the initializer once per worker process (per `key`), then `fn` over the batch."""
    if _STATE["key"] != key:
        initializer(*initargs)
        _STATE["key"] = key
    return [fn(*task) for task in tasks]


def _task_name(fn: Callable[..., Any], tasks: list[tuple]) -> str:
    """What the worker's process title and Ray's task list show (`ray::<name>`)."""
    first = tasks[0][0] if tasks and tasks[0] else ""
    label = getattr(first, "label", None) or str(first)
    return f"{fn.__name__} {label}" + (f" +{len(tasks) - 1}" if len(tasks) > 1 else "")


def ray_map(fn: Callable[..., Any], tasks: list[tuple], initializer: Callable[..., None], initargs: tuple,
            resources: list[Resources], batch: int = 1) -> Iterator[Any]:
    """Yield `fn(*task)` per task in completion order; tasks go out `batch` at a time (same
    resources within a batch). On an error the queued tasks are cancelled and the task's own
    exception is raised here (its type and message, not Ray's wrapper with the remote traceback).

    A task holding a GPU runs in a worker process of its own that exits afterwards (`max_calls=1`):
    a reused worker would keep the CUDA context, cached memory and initializer state of the GPU
    that an earlier task was given.
    """
    key = uuid.uuid4().hex
    shared = ray.put(initargs)
    cpu_remote = ray.remote(max_retries=TASK_RETRIES, retry_exceptions=False)(_run_batch)
    gpu_remote = ray.remote(max_retries=TASK_RETRIES, retry_exceptions=False, max_calls=1, num_gpus=1)(_run_batch)
    pending = []
    for start in range(0, len(tasks), max(1, batch)):
        chunk, need = tasks[start:start + batch], resources[start]
        remote = gpu_remote if need.num_gpus > 0 else cpu_remote
        pending.append(remote.options(num_cpus=need.num_cpus, num_gpus=need.num_gpus, name=_task_name(fn, chunk))
                       .remote(key, initializer, shared, fn, chunk))
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                results = ray.get(done[0])
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None)
                raise (cause if isinstance(cause, BaseException) else err) from None
            yield from results
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        raise
