"""Ray workers beside busy processes: `ingest-many` in this process vs a local
Ray cluster of 2 workers, with `--busy` CPU-bound processes running at the same priority.

    python bench/bench_scale_ray.py [--busy 3] [--jobs 4] [--ray-default-niceness]

Jobs: tiny two-conv user models on 6 CatFish images each (catfish:<primitive> sets), so the
figures are about scheduling, not CLA. Prints the in-process time (first call and again), the
Ray cluster's start, a first batch (workers start and import torch) and a second batch on the
same workers. `--ray-default-niceness` starts Ray as before the fix (workers reniced by +15).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.fanout.executors import InlineExecutor, RayExecutor  # noqa: E402 (after the set-up above)
from ingest.fanout.jobs import load_jobs  # noqa: E402 (after the set-up above)
from ingest.fanout.many import ingest_many  # noqa: E402 (after the set-up above)

TINY = """
import torch.nn as nn

def build():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
"""
CONCEPTS = ["stripes", "star", "checker", "dots", "rings", "hatch"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=4, choices=range(1, len(CONCEPTS) + 1))
    ap.add_argument("--ray-default-niceness", action="store_true")
    args = ap.parse_args()
    import yaml

    tmp = Path(tempfile.mkdtemp())
    (tmp / "tiny.py").write_text(TINY)
    jobs_yaml = [
        {"model": "tiny.py:build", "concept": c, "dataset": f"catfish:{c}", "n": 6, "layers": "0,2", "k": 2}
        for c in CONCEPTS[: args.jobs]
    ]
    (tmp / "jobs.yaml").write_text(yaml.safe_dump(jobs_yaml))
    jobs = load_jobs(tmp / "jobs.yaml")
    print(f"{args.jobs} jobs beside {args.busy} busy processes; this process at niceness {os.nice(0)}")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
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
    finally:
        for p in busy:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
