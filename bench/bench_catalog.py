"""Benchmark of the catalog's bulk edge I/O, measured side by side in one run.

    python bench/bench_catalog.py [--rows 10000000] [--orm-rows 2000] [--repeats 3]

Prints, on a fresh DuckDB file in a temporary folder:
- bulk write of a run of ~10 M scores (`store.write_run`, commit included: the matrices as
  compressed blobs plus each pair's top edges as rows, schema 0004) in scores/s, beside an ORM
  row-by-row insert of edge rows (`session.add(Edge(...))` per row, one flush and commit) of a
  small sample, and their ratio;
- read-back of one InceptionV1-sized run (torchvision googlenet's 9 inception outputs,
  inception3a … inception5b, 8 adjacent pairs) into dense float32 matrices and into Arrow.
Targets: ≥ 5 M scores/s written, read-back < 1 s (bench/bench_scale.py has the edge-storage
targets: refine's read ≤ 50 ms per googlenet run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from googlenet_shape import GOOGLENET as GOOGLENET_BLOCKS
from synthetic_runs import write_run

from catalog import store
from catalog.engine import open_catalog
from catalog.models import Edge


def _matrices(widths, rng):
    return [rng.random((m, n), dtype=np.float32) for m, n in zip(widths, widths[1:])]


def bench_write(cat, rows: int, rng) -> tuple[int, float]:
    """Write one run of about `rows` edges (1000-wide layers); returns (edges, seconds)."""
    width = 1000
    pairs = max(1, round(rows / width**2))
    layers = [(f"wide{i}", width) for i in range(pairs + 1)]
    with cat.session() as s, s.begin():
        model = store.ensure_model(s, name="bench-wide", architecture="bench", weights_sha256="1" * 64, layers=layers)
        concept_id = store.ensure_concept(s, "bench")
    matrices = _matrices([w for _, w in layers], rng)
    start = time.perf_counter()
    with cat.session() as s, s.begin():
        write_run(s, model, concept_id, matrices, "w" * 64)
    return pairs * width**2, time.perf_counter() - start


def bench_orm(cat, rows: int, rng) -> float:
    """ORM row by row: one Edge object per row, then one flush and commit; returns seconds."""
    with cat.session() as s:
        model = store.find_model(s, "bench-wide")
    src, dst = model.layers[0].neuron_ids, model.layers[1].neuron_ids
    scores = rng.random(rows, dtype=np.float32)
    start = time.perf_counter()
    with cat.session() as s, s.begin():
        for i in range(rows):
            s.add(
                Edge(
                    run_id=999_999,
                    src_neuron_id=int(src[i % len(src)]),
                    dst_neuron_id=int(dst[i // len(src)]),
                    score=float(scores[i]),
                )
            )
        s.flush()
    return time.perf_counter() - start


def bench_read(cat, repeats: int, rng) -> tuple[int, list[float], list[float]]:
    """Write a googlenet-sized run, read it back; returns (edges, matrix seconds, arrow seconds)."""
    with cat.session() as s, s.begin():
        model = store.ensure_model(
            s, name="googlenet", architecture="inception_v1", weights_sha256="2" * 64, layers=GOOGLENET_BLOCKS
        )
        concept_id = store.ensure_concept(s, "bench")
        matrices = _matrices([w for _, w in GOOGLENET_BLOCKS], rng)
        run_id = write_run(s, model, concept_id, matrices, "r" * 64)
    to_matrices, to_arrow = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        with cat.session() as s:
            back = store.read_run_matrices(s, run_id)
        to_matrices.append(time.perf_counter() - start)
        start = time.perf_counter()
        with cat.session() as s:
            table = store.read_run_edges_arrow(s, run_id)
        to_arrow.append(time.perf_counter() - start)
    assert all(np.array_equal(a, b) for a, b in zip(back, matrices)), "read-back differs from the write"
    assert table.num_rows == sum(m.size for m in matrices)
    return table.num_rows, to_matrices, to_arrow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="edges in the bulk write")
    parser.add_argument("--orm-rows", type=int, default=2_000, help="edges in the ORM sample")
    parser.add_argument("--repeats", type=int, default=3, help="read-back repetitions (median shown)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        cat = open_catalog(Path(tmp) / "bench.duckdb", create=True)
        edges, write_s = bench_write(cat, args.rows, rng)
        orm_s = bench_orm(cat, args.orm_rows, rng)
        read_edges, matrix_s, arrow_s = bench_read(cat, args.repeats, rng)
        cat.close()
    bulk_rate, orm_rate = edges / write_s, args.orm_rows / orm_s
    import duckdb

    print(f"catalog benchmark: DuckDB {duckdb.__version__}, {os.cpu_count()} CPUs")
    print(f"{'measure':<52} {'value':>14}")
    print(f"{'-' * 52} {'-' * 14}")
    print(f"{f'bulk write, {edges:,} scores (s)':<52} {write_s:>14.2f}")
    print(f"{'bulk write (scores/s)':<52} {bulk_rate:>14,.0f}")
    print(f"{f'ORM row-by-row insert, {args.orm_rows:,} edges (rows/s)':<52} {orm_rate:>14,.0f}")
    print(f"{'bulk / ORM':<52} {bulk_rate / orm_rate:>13,.0f}x")
    label = f"read-back into dense matrices, {read_edges:,} scores (s)"
    print(f"{label:<52} {statistics.median(matrix_s):>14.3f}")
    print(f"{'read-back into Arrow, same run (s)':<52} {statistics.median(arrow_s):>14.3f}")
    print(
        f"targets: write >= 5,000,000 scores/s: {'met' if bulk_rate >= 5e6 else 'NOT met'}; "
        f"read-back < 1 s: {'met' if statistics.median(matrix_s) < 1 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
