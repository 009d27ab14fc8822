"""Refine's read measured cold (a fresh process, as `circuits refine` runs) and warm.

    python bench/bench_cold.py --db CATALOG [--db URL ...] [--run 1] [--repeat 7]

Each repetition starts a new Python process that imports the catalog, opens it read-only and
reads one run's score matrices (`catalog.store.read_run_matrices`, what `refine` reads) — the
first read is "cold" (nothing of the file in DuckDB's buffers, SQLAlchemy's caches empty, the
decoding threads not started); the same process then reads it 3 more times ("warm"). Printed
per catalog: medians over the repetitions of the import, the open (engine + schema check), the
cold read, the warm read, and the cold read's CPU time (user + system, this process: less
sensitive than wall time to other jobs on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t0 = time.perf_counter()
from catalog import store
from catalog.engine import open_catalog
t1 = time.perf_counter()
cat = open_catalog(sys.argv[1], read_only=True)
t2 = time.perf_counter()
with cat.session() as s:
    c3, t3 = cpu(), time.perf_counter()
    store.read_run_matrices(s, int(sys.argv[2]))
    c4, t4 = cpu(), time.perf_counter()
    for _ in range(3):
        store.read_run_matrices(s, int(sys.argv[2]))
    t5 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "open": t2 - t1, "cold": t4 - t3, "cold cpu": c4 - c3, "warm": (t5 - t4) / 3}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", action="append", required=True, help="a catalog path or URL (repeatable)")
    parser.add_argument("--run", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    keys = ["import", "open", "cold", "cold cpu", "warm"]
    print("| catalog | " + " | ".join(f"{k} (ms)" for k in keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for db in args.db:
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, db, str(args.run)], cwd=ROOT, capture_output=True, text=True, check=True
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        name = "PostgreSQL" if "://" in db else "DuckDB"
        print(f"| {name} | " + " | ".join(f"{1e3 * statistics.median(r[k] for r in runs):.0f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
