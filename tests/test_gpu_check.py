"""`bench/gpu_check.sh`, the first thing to run on a GPU machine, runs on a CPU in its dry mode
(every step at the smallest size), so that it cannot rot before a GPU runs it.

It starts eight Python processes that import torch: about 25 s of CPU time in all, more than this
suite's usual test, kept in the default suite on purpose (a slow-marked check would rot unseen)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("gpu tests", "cla googlenet", "cla resnet50", "ingest", "export", "apply", "ablate")


def test_gpu_check_dry_run_on_cpu_passes_every_step_and_prints_one_table(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", "--dry", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    table = out.stdout[out.stdout.index("gpu_check on cpu") :].splitlines()
    assert table[1].split() == ["step", "status", "seconds", "result"]
    rows = {line[:14].strip(): line[14:].split() for line in table[2 : 2 + len(STEPS)]}
    assert tuple(rows) == STEPS
    assert all(r[0] == "ok" for r in rows.values()), table
    assert "tests collected" in " ".join(rows["gpu tests"])  # the gpu-marked tests import and are found
    assert "attribute" in rows["cla googlenet"] and "attribute" in rows["cla resnet50"]
    assert (tmp_path / "pruned.pt").exists() and table[-1].startswith("total ")
