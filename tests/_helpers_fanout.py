"""`ingest-many` jobs for the fan-out tests and `bench/bench_scale_ray.py`: tiny two-conv user
models on six CatFish images each (so that the figures are about scheduling, not CLA), and
CPU-bound processes to run beside them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TINY = """
import torch.nn as nn

def build():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
"""
CONCEPTS = ("stripes", "star", "checker", "dots", "rings", "hatch")


def tiny_job_file(folder: Path, n_jobs: int) -> Path:
    """Write `tiny.py` and a job file of `n_jobs` (at most 6) jobs, one CatFish concept each, into
    `folder`; returns the job file's path."""
    import yaml

    (folder / "tiny.py").write_text(TINY)
    base = {"model": "tiny.py:build", "n": 6, "layers": "0,2", "k": 2}
    path = folder / "jobs.yaml"
    path.write_text(yaml.safe_dump([{**base, "concept": c, "dataset": f"catfish:{c}"} for c in CONCEPTS[:n_jobs]]))
    return path


@contextmanager
def busy_processes(n: int) -> Iterator[None]:
    """`n` CPU-bound Python processes at this process's priority while the block runs."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in busy:
            p.kill()
            p.wait()
