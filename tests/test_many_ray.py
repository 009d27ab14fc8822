"""`ingest.fanout.executors.RayExecutor`: what it asks Ray for (a fake `ray` module, fast) and a local
Ray cluster of 2 workers beside busy processes (slow: starting Ray takes ~10 s here)."""

from __future__ import annotations

import sys
import types

import pytest
from _helpers_fanout import busy_processes, tiny_job_file

from ingest.fanout.executors import FanoutError, InlineExecutor, RayExecutor, wants_gpu
from ingest.fanout.jobs import load_jobs
from ingest.fanout.many import ingest_many
from ingest.threads import usable_cpus

pytestmark = pytest.mark.filterwarnings("ignore::ingest.zoo.specs.RandomInitWarning")


class _FakeRay(types.ModuleType):
    """Records `ray.init` and the resources each task asks for; runs tasks at once."""

    def __init__(self, resources: dict[str, float]) -> None:
        super().__init__("ray")
        self.resources, self.inits, self.asked = resources, [], []
        self.exceptions = types.SimpleNamespace(RayError=RuntimeError)

    def is_initialized(self) -> bool:
        return False

    def init(self, address=None, **kwargs) -> None:
        self.inits.append({"address": address, **kwargs})

    def cluster_resources(self) -> dict[str, float]:
        return self.resources

    def remote(self, **options):
        fake = self

        class _Remote:
            def __init__(self, fn, opts):
                self.fn, self.opts = fn, opts

            def options(self, **more):
                return _Remote(self.fn, {**self.opts, **more})

            def remote(self, *args):
                fake.asked.append(self.opts)
                return self.fn(*args)

        return lambda fn: _Remote(fn, options)

    def shutdown(self) -> None:
        pass


def _fake(monkeypatch, resources):
    ray = _FakeRay(resources)
    monkeypatch.setitem(sys.modules, "ray", ray)
    return ray


def test_local_cluster_runs_workers_at_our_priority_with_usable_cpu_threads(monkeypatch):
    ray = _fake(monkeypatch, {"CPU": 3.0})
    ex = RayExecutor(3)
    [init] = ray.inits
    assert init["address"] is None and init["num_cpus"] == 3
    assert init["_system_config"] == {"worker_niceness": 0}  # Ray's default adds 15
    env = init["runtime_env"]["env_vars"]
    assert env["OMP_NUM_THREADS"] == str(max(1, usable_cpus() // 3))
    assert env["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] == "1"  # a task without a GPU sees none
    assert ex.workers == 3 and ex.description == "a local Ray cluster: 3 workers, CPU only"
    assert RayExecutor(None).workers == RayExecutor.LOCAL_WORKERS


def test_cluster_concurrency_comes_from_its_cpus_and_gpus_go_to_gpu_jobs_only(monkeypatch):
    ray = _fake(monkeypatch, {"CPU": 48.0, "GPU": 2.0})
    ex = RayExecutor(None, "ray://head:10001")
    [init] = ray.inits
    assert init["address"] == "ray://head:10001" and "num_cpus" not in init and "_system_config" not in init
    assert "OMP_NUM_THREADS" not in init["runtime_env"]["env_vars"]  # Ray sets it to the task's CPUs
    assert ex.workers == 48 and ex.description.endswith("48 workers, 2 GPUs for jobs on a cuda device")
    assert RayExecutor(5, "auto").workers == 5  # --workers given explicitly
    assert ex.submit(lambda x: x + 1, 1) == 2 and ex.submit(lambda: "gpu", gpu=True) == "gpu"
    assert [a["num_gpus"] for a in ray.asked] == [0, 1] and all(a["num_cpus"] == 1 for a in ray.asked)
    # no GPU in the cluster: a GPU job is sent without one (it then fails with its device error)
    ray2 = _fake(monkeypatch, {"CPU": 4.0})
    RayExecutor(None, "auto").submit(lambda: None, gpu=True)
    assert ray2.asked[-1]["num_gpus"] == 0
    with pytest.raises(FanoutError, match="at least 1 worker"):
        RayExecutor(0, "auto")


def test_which_devices_ask_for_a_gpu():
    assert wants_gpu("cuda") and wants_gpu("cuda:1") and wants_gpu(" CUDA ")
    assert not wants_gpu("auto") and not wants_gpu("cpu")


@pytest.mark.slow
def test_ray_two_workers_beside_busy_processes_keep_up_with_no_ray(tmp_path):
    """Ray's default worker niceness (15) starved the workers beside busy processes; at our own
    priority two workers take at most 2x the in-process time. Both are timed in steady state: after
    a warm-up batch that starts the workers and imports torch (a one-off cost, ~10-60 s on a loaded
    2-core machine)."""
    pytest.importorskip("ray")
    jobs = load_jobs(tiny_job_file(tmp_path, 4))
    with busy_processes(3):
        ingest_many(str(tmp_path / "inline-warm.duckdb"), jobs[:1], InlineExecutor())  # imports, first-call costs
        inline = ingest_many(str(tmp_path / "inline.duckdb"), jobs, InlineExecutor())
        executor = RayExecutor(2)
        try:
            ingest_many(str(tmp_path / "warm.duckdb"), jobs[:4], executor)
            fanned = ingest_many(str(tmp_path / "ray.duckdb"), jobs, executor)
        finally:
            executor.shutdown()
    assert [o.status for o in inline.outcomes] == [o.status for o in fanned.outcomes] == ["stored"] * 4
    assert fanned.seconds <= 2 * inline.seconds, (fanned.seconds, inline.seconds)
