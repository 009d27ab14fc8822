"""Where `ingest.fanout.many` runs its jobs: in this process (`InlineExecutor`) or on a Ray cluster
(`RayExecutor`, the `[ray]` extra). Both have the same two calls: `submit(fn, *args)` returns a
handle, `wait_one(handles)` blocks until one of them is done and returns it with its result.
The job function catches its own errors (a job's failure is a result), so executors only move
work and results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from catalog.errors import CircuitsError

__all__ = ["FanoutError", "InlineExecutor", "RayExecutor"]


class FanoutError(CircuitsError):
    """The executor cannot be started (Ray missing, cluster unreachable)."""


class InlineExecutor:
    """Runs each job in this process when it is waited for, one at a time (tests; no Ray)."""

    workers = 1
    description = "one at a time in this process"

    def __init__(self) -> None:
        self._calls: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._next = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> int:
        self._next += 1
        self._calls[self._next] = (fn, args)
        return self._next

    def wait_one(self, handles: Sequence[int]) -> tuple[int, Any]:
        handle = min(handles)  # submission order
        fn, args = self._calls.pop(handle)
        return handle, fn(*args)

    def shutdown(self) -> None:
        self._calls.clear()


class RayExecutor:
    """Runs jobs as Ray tasks: on a local cluster of `workers` CPUs started here, or on the cluster
    at `address` (`ray://host:10001`, or "auto"). A task takes one CPU, and one GPU when the
    cluster has GPUs, so each worker gets a device of its own.

    On a local cluster the workers get this process's PYTHONPATH, and torch in each uses
    cores / workers threads. On a real cluster the code must be installed on the nodes (or
    shipped with a Ray runtime environment set up by the caller, `ray.init(runtime_env=…)`).
    """

    def __init__(self, workers: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise FanoutError(
                "Ray is not installed: `pip install 'visual-circuit-catalog[ray]'`, or run the jobs in this "
                "process with --workers 0"
            ) from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            env = {"OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}
            if address is None:
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
                if os.environ.get("PYTHONPATH"):
                    env["PYTHONPATH"] = os.environ["PYTHONPATH"]
            kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False}
            if address is None:
                kwargs.update(num_cpus=workers, include_dashboard=False)
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as exc:
                raise FanoutError(f"cannot reach the Ray cluster at {address}: {exc}") from None
            self._started = True
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        self.workers = workers
        self.gpus_per_task = 1 if gpus >= 1 else 0
        where = f"Ray cluster at {address}" if address else "a local Ray cluster"
        self.description = f"{where}: {workers} workers" + (", a GPU each" if gpus else ", CPU only")
        self._remote: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._ray.remote(num_cpus=1, num_gpus=self.gpus_per_task, max_retries=1)(fn)
            self._remote[fn] = remote
        return remote.remote(*args)

    def wait_one(self, handles: Sequence[Any]) -> tuple[Any, Any]:
        [done], _ = self._ray.wait(list(handles), num_returns=1)
        try:
            return done, self._ray.get(done)
        except self._ray.exceptions.RayError as exc:  # the worker process died (OOM, node lost)
            return done, exc

    def shutdown(self) -> None:
        if self._started:
            self._ray.shutdown()
