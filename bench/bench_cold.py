"""Refine's read measured cold (a fresh process, as `circuits refine` runs) and warm.

    python bench/bench_cold.py --db CATALOG [--db URL ...] [--run 1] [--repeat 7] [--fill]

Each repetition starts a new Python process that imports the catalog, opens it read-only and
reads one run's score matrices (`catalog.store.read_run_matrices`, what `refine` reads) — the
first read is "cold" (nothing of the file in DuckDB's buffers, SQLAlchemy's caches empty, the
decoding threads not started); the same process then reads it 3 more times ("warm"). Printed
per catalog: medians over the repetitions of the import, the open (engine + schema check), the
cold read, the warm read, and the cold read's CPU time (user + system, this process: less
sensitive than wall time to other jobs on a shared machine).

`--fill` first writes one googlenet-sized run (`bench_catalog_scale.real_like_run` scores: dead
rows and columns, log-normal values; 3,146,752 scores) into each catalog that has no runs yet
(creating a DuckDB file or the schema of an empty PostgreSQL database), and reads that run.
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


def fill(db: str) -> int:
    """The id of the first run in `db`, after writing one googlenet-sized run there if it has none."""
    import datetime as dt

    import numpy as np

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_catalog_scale import real_like_run
    from googlenet_shape import GOOGLENET, NAMES

    from catalog import store
    from catalog.engine import open_catalog
    from queries.graphs import query_arrow

    cat = open_catalog(db, create=True)
    with cat.session() as s:
        first = query_arrow(s, "SELECT min(id) AS id FROM run").to_pylist()[0]["id"]
    if first is None:
        with cat.session() as s, s.begin():
            model = store.ensure_model(
                s, name="googlenet", architecture="synthetic", weights_sha256="0" * 64, layers=GOOGLENET
            )
            first = store.write_run(
                s,
                model=model,
                concept_id=store.ensure_concept(s, "synthetic"),
                layer_names=NAMES,
                params={},
                image_set_sha256="1" * 64,
                n_images=8,
                provenance_key="0" * 64,
                library_versions={},
                device="cpu",
                started_at=dt.datetime(2026, 1, 1),
                seconds=0.0,
                matrices=real_like_run(np.random.default_rng(0)),
            )
    cat.close()
    return int(first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", action="append", required=True, help="a catalog path or URL (repeatable)")
    parser.add_argument("--run", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--fill", action="store_true", help="write a googlenet-sized run where there is none")
    args = parser.parse_args()
    keys = ["import", "open", "cold", "cold cpu", "warm"]
    print("| catalog | " + " | ".join(f"{k} (ms)" for k in keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for db in args.db:
        run_id = fill(db) if args.fill else args.run
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, db, str(run_id)], cwd=ROOT, capture_output=True, text=True, check=True
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        name = "PostgreSQL" if "://" in db else "DuckDB"
        print(f"| {name} | " + " | ".join(f"{1e3 * statistics.median(r[k] for r in runs):.0f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
