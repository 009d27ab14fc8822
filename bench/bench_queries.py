"""Benchmark of the query layer on a synthetic InceptionV1-sized catalog.

Builds (or reuses, with --db) a DuckDB catalog holding one model with InceptionV1's nine block
widths, `--runs` runs (Σ C_i·C_{i+1} ≈ 3.1 M scores each, written through `catalog.store` /
`catalog.bulk`: compressed matrices plus top edges, schema 0004), and `--circuits` circuits of k = 10 per layer spread over the
runs. Then it times, on a read-only catalog:

* the Jaccard overlap matrix over all circuits (`overlap_of_circuits`; target < 0.5 s), and the
  same with the edge-weighted metric;
* `circuits overlap`'s library path (`overlap_matrix`) over the runs' concepts;
* one `shared` query for two concepts (`shared_neurons`; target < 0.2 s);
* one run's top 1 % edges into a NetworkX DiGraph (`top_edge_graph`; target < 2 s).

Each query runs `--repeat` times, each in a new session; the table shows the first (cold) time and
the median. Usage: `python bench/bench_queries.py [--db PATH] [--runs 20] [--circuits 200]`.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synthetic_runs import write_circuits, write_run  # noqa: E402 (bench/ is on sys.path when a bench runs)

from catalog import store  # noqa: E402 (after the set-up above)
from catalog.engine import close_all, open_catalog  # noqa: E402 (after the set-up above)

LAYERS = [
    ("mixed3a", 256),
    ("mixed3b", 480),
    ("mixed4a", 512),
    ("mixed4b", 512),
    ("mixed4c", 512),
    ("mixed4d", 528),
    ("mixed4e", 832),
    ("mixed5a", 832),
    ("mixed5b", 1024),
]
K = 10  # neurons per layer in every circuit
POOL = 40  # channels per layer a run's circuits are drawn from: circuits of one run overlap a lot
SHARED_POOL = 60  # channels per layer every run's pool draws from: circuits of different runs overlap some


def build(path: Path, n_runs: int, n_circuits: int, seed: int = 0) -> None:
    """Write the synthetic catalog to `path` (a new file)."""
    rng = np.random.default_rng(seed)
    widths = [w for _, w in LAYERS]
    cat = open_catalog(path, create=True)
    t0 = time.perf_counter()
    with cat.session() as s, s.begin():
        model = store.ensure_model(
            s,
            name="inception-synth",
            architecture="InceptionV1 (synthetic)",
            weights_sha256=hashlib.sha256(b"synthetic").hexdigest(),
            layers=LAYERS,
        )
    shared_pool = [rng.choice(w, size=SHARED_POOL, replace=False) for w in widths]
    n_edges = 0
    for r in range(n_runs):
        matrices = [
            rng.gamma(0.5, 1.0, size=(widths[i], widths[i + 1])).astype(np.float32) for i in range(len(widths) - 1)
        ]
        pools = [
            np.union1d(rng.choice(sp, size=POOL // 2, replace=False), rng.choice(w, size=POOL // 2, replace=False))
            for sp, w in zip(shared_pool, widths)
        ]
        per_run = n_circuits // n_runs + (1 if r < n_circuits % n_runs else 0)
        with cat.session() as s, s.begin():
            concept_id = store.ensure_concept(s, f"concept{r:03d}")
            key = hashlib.sha256(f"run{r}".encode()).hexdigest()
            run_id = write_run(s, model, concept_id, matrices, key, image_set_sha256=key, n_images=16)
            channel_sets = [
                [np.sort(rng.choice(pool, size=K, replace=False)).tolist() for pool in pools] for _ in range(per_run)
            ]
            write_circuits(s, run_id, channel_sets, sweeps=3, history=(1.0, 2.0))
        n_edges += sum(m.size for m in matrices)
        print(
            f"  run {r + 1}/{n_runs} written ({n_edges / 1e6:.1f} M edges, {time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    cat.close()


def _off_diagonal_mean(m: np.ndarray) -> float:
    return float(np.nanmean(m[~np.eye(len(m), dtype=bool)]))


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """(first, median) wall-clock seconds of `repeat` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return times[0], statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="catalog file to build (or reuse when it exists)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--circuits", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from queries.graphs import EdgeSelection, top_edge_graph
    from queries.overlap import overlap_matrix, overlap_of_circuits, shared_neurons

    tmp = None
    path = args.db
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_queries_")
        path = Path(tmp.name) / "bench.duckdb"
    if not path.exists():
        print(f"building {path}: {args.runs} runs, {args.circuits} circuits (k={K} × {len(LAYERS)} layers)")
        t = time.perf_counter()
        build(path, args.runs, args.circuits)
        print(f"built in {time.perf_counter() - t:.1f} s")
    cat = open_catalog(path, read_only=True)

    def in_session(fn):
        def call():
            with cat.session() as s:
                return fn(s)

        return call

    with cat.session() as s:
        from catalog.sql import query_arrow

        ids = query_arrow(s, "SELECT id FROM circuit ORDER BY id").column("id").to_pylist()
        n_edges = query_arrow(s, "SELECT sum(n_src * n_dst) AS n FROM run_matrix").column("n")[0].as_py()
        first_run = query_arrow(s, "SELECT min(id) AS r FROM run").column("r")[0].as_py()
    print(f"catalog: {len(ids)} circuits, {float(n_edges) / 1e6:.1f} M scores")  # sum() is a DECIMAL

    rows = []

    def bench(name: str, target: float | None, fn, describe) -> None:
        first, median, result = timed(in_session(fn), args.repeat)
        rows.append((name, first, median, target, describe(result)))

    bench(
        "overlap, jaccard, all circuits",
        0.5,
        lambda s: overlap_of_circuits(s, ids, "jaccard"),
        lambda m: f"{m.shape[0]}×{m.shape[1]} matrix",
    )
    bench(
        "overlap, weighted, all circuits",
        None,
        lambda s: overlap_of_circuits(s, ids, "weighted"),
        lambda m: f"{m.shape[0]}×{m.shape[1]} matrix, mean off-diagonal {_off_diagonal_mean(m):.3f}",
    )
    bench(
        "overlap_matrix (per concept)",
        None,
        lambda s: overlap_matrix(s, "inception-synth"),
        lambda m: f"{len(m.labels)} concepts",
    )
    bench(
        "shared, 2 concepts",
        0.2,
        lambda s: shared_neurons(s, "inception-synth", ["concept000", "concept001"]),
        lambda r: f"{len(r.neurons)} shared neurons",
    )
    bench(
        "top 1% edges → NetworkX",
        2.0,
        lambda s: top_edge_graph(s, first_run, EdgeSelection(top_fraction=0.01)),
        lambda g: f"{g.number_of_nodes()} nodes, {g.number_of_edges()} edges",
    )

    print()
    print(f"{'query':<34} {'first s':>8} {'median s':>9} {'target s':>9}  result")
    print("-" * 100)
    for name, first, median, target, what in rows:
        verdict = "" if target is None else ("  ok" if median < target else "  MISSED")
        tgt = "" if target is None else f"{target:.1f}"
        print(f"{name:<34} {first:>8.3f} {median:>9.3f} {tgt:>9}  {what}{verdict}")
    close_all()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
