"""Threads and OpenMP's wait policy on this machine (issues 9 and 18): googlenet `attribute`
in a fresh process per setting, because OpenMP reads OMP_WAIT_POLICY only once, when torch loads.

    python bench/bench_threads.py [--images 4] [--pairs 2] [--repeats 1]

Settings (each its own subprocess, same random-init googlenet, same inputs, environment without
OMP_WAIT_POLICY and OMP_NUM_THREADS):
- import order: `import ingest` before torch (the CLI's order: OpenMP starts with
  OMP_WAIT_POLICY=PASSIVE) or torch first (a notebook's: the policy is set too late for this
  process, so idle threads spin; `ingest.threads.configure` warns when it uses more than one);
- threads: `ingest.threads.configure()`'s default (usable CPUs minus the load average, decided
  the same way in both orders), every CPU, or 1.
Each row times two `attribute` calls: the first plans (probe, gradient checks, path timings), the
second reuses the plan (`ingest.cla.plan_cache`). The load average is printed beside each row: on
a shared machine the numbers move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import os, sys, time, json
mode, n_threads, n_images, n_pairs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if mode.startswith("ingest-first"):
    import ingest  # sets OMP_WAIT_POLICY=PASSIVE before torch loads
import torch
import ingest
from ingest.threads import configure, wait_policy_active
from ingest.cla.attribute import attribute
from torchvision.models import googlenet
n = configure(None) if n_threads == 0 else configure(n_threads)
torch.manual_seed(0)
model = googlenet(weights=None, init_weights=False, aux_logits=False).eval()
layers = ["inception3a", "inception3b", "inception4a", "inception4b"][: n_pairs + 1]
x = torch.randn(n_images, 3, 224, 224, generator=torch.Generator().manual_seed(1))
times = []
for _ in range(2):  # the first call plans (probe, gradient checks); the second reuses the plan
    t = time.perf_counter()
    attribute(model, layers, x, batch_size=n_images, device="cpu")
    times.append(time.perf_counter() - t)
print(json.dumps({"first": times[0], "second": times[1], "threads": n, "passive": wait_policy_active(),
                  "load": os.getloadavg()[0]}))
"""


def run(mode: str, threads: int, images: int, pairs: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(threads), str(images), str(pairs)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    cpus = len(os.sched_getaffinity(0))
    settings = [
        ("ingest-first", 0, "import ingest, then torch; default"),
        ("torch-first", 0, "import torch, then ingest; default"),
        ("ingest-first", cpus, f"import ingest, then torch; {cpus} thr."),
        ("torch-first", cpus, f"import torch, then ingest; {cpus} thr."),
        ("ingest-first", 1, "1 thread"),
    ]
    print(f"googlenet attribute, {args.images} images 224 px, {args.pairs} pairs, {cpus} CPUs")
    print(f"{'setting':<36} {'threads':>7} {'passive':>7} {'1st call':>9} {'2nd call':>9} {'load':>6}")
    for _ in range(args.repeats):
        for mode, threads, label in settings:
            r = run(mode, threads, args.images, args.pairs)
            print(
                f"{label:<36} {r['threads']:>7} {'yes' if r['passive'] else 'NO':>7} {r['first']:>8.2f}s "
                f"{r['second']:>8.2f}s {r['load']:>6.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
