"""Benchmark of scale-out, measured side by side in one run.

    python bench/bench_scale_jobs.py [--jobs 6] [--images 16] [--edges-runs 2] [--pg URL]

Prints:
- `circuits ingest-many` throughput, jobs per minute, with 1 and with 2 Ray workers on this
  machine: the same catfish-mini job list (distinct concepts, so every job computes) into a fresh
  DuckDB file each time (the driver writes); Ray's start-up is not counted, the workers' first
  imports are;
- bulk edge writes, edges per second: COPY into PostgreSQL beside Arrow into DuckDB, googlenet-
  sized runs (9 inception block outputs, 3.15 M edges each) through `catalog.store.write_run`,
  commit included. PostgreSQL is the server at `--pg` or `$CIRCUITS_TEST_PG_URL` (a throw-away
  database is created on it and dropped); the row is left out when there is none.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np
from googlenet_shape import GOOGLENET as GOOGLENET_BLOCKS
from synthetic_runs import write_run

from catalog import store
from catalog.engine import close_all, open_catalog

CONCEPTS = [
    "stripes",
    "checker",
    "dots",
    "rings",
    "star",
    "hatch",
    "stripes_star",
    "checker_dots",
    "dots_rings",
    "rings_star",
    "star_hatch",
    "stripes_hatch",
]


def bench_jobs(workers: int, n_jobs: int, images: int, folder: Path) -> tuple[float, int]:
    """Run `n_jobs` catfish-mini jobs on `workers` Ray workers; returns (seconds, jobs stored)."""
    from ingest.fanout.executors import RayExecutor
    from ingest.fanout.jobs import Job
    from ingest.fanout.many import ingest_many

    jobs = [
        Job(model="catfish-mini", concept=c, dataset=f"catfish:{c}", n=images, k=3, device="cpu")
        for c in CONCEPTS[:n_jobs]
    ]
    executor = RayExecutor(workers)
    try:
        report = ingest_many(str(folder / f"jobs-{workers}.duckdb"), jobs, executor, retries=0)
    finally:
        executor.shutdown()
        close_all()
    return report.seconds, report.counts.get("stored", 0)


def bench_edges(url: str, runs: int) -> tuple[int, float]:
    """Write `runs` googlenet-sized runs, each in its own transaction; returns (edges, seconds)."""
    rng = np.random.default_rng(0)
    widths = [w for _, w in GOOGLENET_BLOCKS]
    matrices = [rng.random((m, n), dtype=np.float32) for m, n in zip(widths, widths[1:])]
    cat = open_catalog(url, create=True)
    with cat.writing() as s:
        model = store.ensure_model(
            s, name="googlenet", architecture="bench", weights_sha256="0" * 64, layers=GOOGLENET_BLOCKS
        )
        concept = store.ensure_concept(s, "bench")
    seconds = 0.0
    for r in range(runs):
        t0 = time.perf_counter()
        with cat.writing() as s:
            write_run(s, model, concept, matrices, f"bench-{r}")
        seconds += time.perf_counter() - t0
    cat.close()
    return runs * sum(m * n for m, n in zip(widths, widths[1:])), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6, help="catfish-mini jobs per worker count")
    parser.add_argument("--images", type=int, default=16, help="images per job")
    parser.add_argument("--edges-runs", type=int, default=2, help="googlenet-sized runs per backend")
    parser.add_argument("--pg", default=os.environ.get("CIRCUITS_TEST_PG_URL"), help="PostgreSQL server URL")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for workers in (1, 2):
            seconds, stored = bench_jobs(workers, args.jobs, args.images, folder)
            rows.append(
                (
                    f"ingest-many, {workers} Ray worker{'s' if workers > 1 else ''} "
                    f"({args.jobs} catfish-mini jobs, {args.images} images)",
                    f"{60 * stored / seconds:.1f} jobs/min ({seconds:.1f} s)",
                )
            )
        edges, seconds = bench_edges(str(folder / "edges.duckdb"), args.edges_runs)
        rows.append(
            (
                f"Arrow into DuckDB ({args.edges_runs} googlenet-sized runs, {edges / 1e6:.1f} M edges)",
                f"{edges / seconds / 1e6:.2f} M edges/s",
            )
        )
    if args.pg:
        import sqlalchemy as sa

        server = sa.engine.make_url(args.pg)
        name = f"bench_{secrets.token_hex(4)}"
        admin = sa.create_engine(server.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = server.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
            edges, seconds = bench_edges(url, args.edges_runs)
            rows.append(
                (
                    f"COPY into PostgreSQL ({args.edges_runs} googlenet-sized runs, {edges / 1e6:.1f} M edges)",
                    f"{edges / seconds / 1e6:.2f} M edges/s",
                )
            )
        finally:
            close_all()
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    print("| measure | value |\n|---|---|")
    for what, value in rows:
        print(f"| {what} | {value} |")


if __name__ == "__main__":
    main()
