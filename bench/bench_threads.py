"""Threads and OpenMP's wait policy on this machine: googlenet `attribute` in a
fresh process per setting, because OpenMP reads OMP_WAIT_POLICY only once, when torch loads.

    python bench/bench_threads.py [--images 4] [--pairs 2]

Settings (each its own subprocess, same random-init googlenet, same inputs):
- spin, N threads: OMP_WAIT_POLICY unset, torch's default thread count (what a library user or a
  script that imports torch first got before this fix);
- set after import: OMP_WAIT_POLICY=PASSIVE set after `import torch` (has no effect);
- passive, N threads: set before torch loads (what the CLI does: `ingest.threads.set_wait_policy()`
  before torch is imported);
- passive, default: `ingest.threads.configure()` (free CPUs minus the load average);
- 1 thread;
- import ingest first / import torch first: a library user's script that calls nothing: importing
  `ingest` changes no process state, so the import order must not change the speed.
Each row times two `attribute` calls on the same images: the first plans (probe, gradient checks,
path timings), the second reuses the plan (`ingest.cla.plan_cache`); `seconds` in the
older tables is the second.
The load average is printed beside each row: on a shared machine the numbers move with it.
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
if mode in ("passive", "default"):
    from ingest.threads import set_wait_policy
    set_wait_policy()  # OMP_WAIT_POLICY=PASSIVE before torch loads (what the CLI does)
if mode == "ingest-first":
    import ingest  # changes no process state: the order must not matter
passive = "OMP_WAIT_POLICY" in os.environ  # what OpenMP sees: it reads the variable when torch loads
import torch
if mode == "after":
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
import ingest
from ingest.threads import configure
from ingest.cla.attribution import attribute
from torchvision.models import googlenet
if mode in ("ingest-first", "torch-first"):
    n = torch.get_num_threads()  # no set-up: torch's own default
else:
    n = configure(None) if mode == "default" else configure(n_threads)
torch.manual_seed(0)
model = googlenet(weights=None, init_weights=False, aux_logits=False).eval()
layers = ["inception3a", "inception3b", "inception4a", "inception4b"][: n_pairs + 1]
x = torch.randn(n_images, 3, 224, 224, generator=torch.Generator().manual_seed(1))
times = []
for _ in range(2):  # the first call plans (probe, gradient checks); the second reuses the plan
    t = time.perf_counter()
    attribute(model, layers, x, batch_size=n_images, device="cpu")
    times.append(time.perf_counter() - t)
print(json.dumps({"first": times[0], "seconds": times[1], "threads": n, "passive": passive,
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
    ap.add_argument(
        "--only", help="comma-separated modes to run (spin, after, passive, default, ingest-first, torch-first)"
    )
    args = ap.parse_args()
    cpus = len(os.sched_getaffinity(0))
    settings = [
        ("spin", cpus, f"spin, {cpus} threads"),
        ("after", cpus, f"set after import, {cpus} threads"),
        ("passive", cpus, f"passive, {cpus} threads"),
        ("default", 0, "passive, default threads"),
        ("passive", 1, "1 thread"),
        ("ingest-first", 0, "import ingest first, no set-up"),
        ("torch-first", 0, "import torch first, no set-up"),
    ]
    print(f"googlenet attribute, {args.images} images 224 px, {args.pairs} pairs, {cpus} CPUs")
    print(f"{'setting':<32} {'threads':>7} {'passive':>7} {'1st call':>9} {'2nd call':>9} {'load':>6}")
    for _ in range(args.repeats):
        for mode, threads, label in settings:
            if args.only and mode not in args.only.split(","):
                continue
            r = run(mode, threads, args.images, args.pairs)
            print(
                f"{label:<32} {r['threads']:>7} {'yes' if r['passive'] else 'no':>7} {r['first']:>8.2f}s "
                f"{r['seconds']:>8.2f}s {r['load']:>6.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
