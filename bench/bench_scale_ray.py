"""Ray workers beside busy processes: `ingest-many` in this process vs a local
Ray cluster of 2 workers, with `--busy` CPU-bound processes running at the same priority.

    python bench/bench_scale_ray.py [--busy 3] [--jobs 4] [--ray-default-niceness]

Jobs: tiny two-conv user models on 6 CatFish images each (catfish:<primitive> sets), so the
figures are about scheduling, not CLA: the jobs and busy processes of tests/test_many_ray.py
(`tests/_helpers_fanout.py`). Prints the in-process time (first call and again), the
Ray cluster's start, a first batch (workers start and import torch) and a second batch on the
same workers. `--ray-default-niceness` starts Ray as before the fix (workers reniced by +15).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _helpers_fanout import CONCEPTS, busy_processes, tiny_job_file  # noqa: E402 (after the set-up above)

from ingest.fanout.executors import InlineExecutor, RayExecutor  # noqa: E402 (after the set-up above)
from ingest.fanout.jobs import load_jobs  # noqa: E402 (after the set-up above)
from ingest.fanout.many import ingest_many  # noqa: E402 (after the set-up above)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=4, choices=range(1, len(CONCEPTS) + 1))
    ap.add_argument("--ray-default-niceness", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    jobs = load_jobs(tiny_job_file(tmp, args.jobs))
    print(f"{args.jobs} jobs beside {args.busy} busy processes; this process at niceness {os.nice(0)}")
    with busy_processes(args.busy):
        for label, db in (("in process, first", "i1"), ("in process, again", "i2")):
            print(
                f"{label:<34} {ingest_many(str(tmp / f'{db}.duckdb'), jobs, InlineExecutor()).seconds:7.1f} s",
                flush=True,
            )
        t = time.perf_counter()
        if args.ray_default_niceness:  # as before the fix: Ray's own default worker niceness
            import ray

            env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
        executor = RayExecutor(2)
        print(f"{'Ray cluster start':<34} {time.perf_counter() - t:7.1f} s  ({executor.description})", flush=True)
        try:
            for label, db in (("Ray, 2 workers, first batch", "r1"), ("Ray, 2 workers, same workers", "r2")):
                print(
                    f"{label:<34} {ingest_many(str(tmp / f'{db}.duckdb'), jobs, executor).seconds:7.1f} s", flush=True
                )
        finally:
            executor.shutdown()


if __name__ == "__main__":
    main()
