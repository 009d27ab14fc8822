"""Where `ingest.fanout.many` runs its jobs: in this process (`InlineExecutor`) or on a Ray cluster
(`RayExecutor`, the `[ray]` extra). Both have the same two calls: `submit(fn, *args, gpu=False)`
returns a handle (`gpu`: the job needs a GPU), `wait_one(handles)` blocks until one of them is done
and returns it with its result. The job function catches its own errors (a job's failure is a result), so executors only move
work and results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from catalog.errors import CircuitsError
from ingest.threads import usable_cpus

__all__ = ["FanoutError", "InlineExecutor", "RayExecutor", "wants_gpu"]


class FanoutError(CircuitsError):
    """The executor cannot be started (Ray missing, cluster unreachable)."""


class InlineExecutor:
    """Runs each job in this process when it is waited for, one at a time (tests; no Ray)."""

    workers = 1
    description = "one at a time in this process"

    def __init__(self) -> None:
        self._calls: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._next = 0

    def submit(self, fn: Callable[..., Any], *args: Any, gpu: bool = False) -> int:
        """Queue `fn(*args)`; `gpu` is ignored (the job uses whatever device it names)."""
        self._next += 1
        self._calls[self._next] = (fn, args)
        return self._next

    def wait_one(self, handles: Sequence[int]) -> tuple[int, Any]:
        handle = min(handles)  # submission order
        fn, args = self._calls.pop(handle)
        return handle, fn(*args)

    def shutdown(self) -> None:
        self._calls.clear()


def wants_gpu(device: str) -> bool:
    """Whether a job's `device` asks for a GPU ("cuda", "cuda:1"); "auto" and "cpu" do not."""
    return device.strip().lower().startswith("cuda")


class RayExecutor:
    """Runs jobs as Ray tasks: on a local cluster started here, or on the cluster at `address`
    (`ray://host:10001`, or "auto").

    - Concurrency: `workers` jobs at once when given; otherwise 2 on a local cluster and, on a
      cluster, as many as it has CPUs (each task holds one CPU).
    - GPUs: a job takes a GPU only when its device asks for one (`submit(..., gpu=True)`, see
      `wants_gpu`), so CPU-only nodes keep running the other jobs, which see no GPU ("auto" then
      means CPU). A GPU job on a cluster without GPUs runs without one and fails with its device error.
    - Priority and threads: on a local cluster the workers run at this process's priority (Ray's
      default renices them by 15, which starves them beside busy processes) and torch in each uses
      `usable_cpus() // workers` threads. A cluster started elsewhere keeps its own settings (start
      its nodes with `RAY_worker_niceness=0` for the same priority); Ray gives each task's torch as
      many threads as the CPUs the task holds.

    On a local cluster the workers get this process's PYTHONPATH. On a real cluster the code must be
    installed on the nodes (or shipped with a Ray runtime environment set up by the caller,
    `ray.init(runtime_env=…)`).
    """

    LOCAL_WORKERS = 2  # a local cluster's default concurrency (the CLI's --workers default)

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise FanoutError(
                "Ray is not installed: `pip install 'visual-circuit-catalog[ray]'`, or run the jobs in this "
                "process (`InlineExecutor()`)"
            ) from None
        if workers is not None and workers < 1:
            raise FanoutError(f"a Ray executor needs at least 1 worker, got {workers}")
        self._ray = ray
        self._started = False
        local = address is None
        if local and workers is None:
            workers = self.LOCAL_WORKERS
        if not ray.is_initialized():
            # Without GPUs assigned, a task sees none (Ray 2.60, as installed here, otherwise leaves every GPU visible).
            env = {"OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}
            kwargs: dict[str, Any] = {"log_to_driver": False}
            if local:
                assert workers is not None, "a local cluster's size is set above"
                env["OMP_NUM_THREADS"] = str(max(1, usable_cpus() // workers))
                if os.environ.get("PYTHONPATH"):
                    env["PYTHONPATH"] = os.environ["PYTHONPATH"]
                # worker_niceness is added to the raylet's (this process's) niceness: 0 keeps ours
                kwargs.update(num_cpus=workers, include_dashboard=False, _system_config={"worker_niceness": 0})
            kwargs["runtime_env"] = {"env_vars": env}
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as exc:
                raise FanoutError(f"cannot reach the Ray cluster at {address}: {exc}") from None
            self._started = True
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.workers = workers if workers is not None else max(1, int(resources.get("CPU", 1)))
        where = f"Ray cluster at {address}" if address else "a local Ray cluster"
        gpu_note = f", {self.gpus} GPUs for jobs on a cuda device" if self.gpus else ", CPU only"
        self.description = f"{where}: {self.workers} workers" + gpu_note
        self._remote: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], *args: Any, gpu: bool = False) -> Any:
        """Start `fn(*args)` as a task holding one CPU, and one GPU when `gpu` and the cluster has one."""
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._ray.remote(num_cpus=1, num_gpus=0, max_retries=1)(fn)
            self._remote[fn] = remote
        if gpu and self.gpus:
            remote = remote.options(num_gpus=1)
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
