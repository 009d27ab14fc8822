"""Edge storage at scale: today's layout beside schema 0004's, measured in one run.

    python bench/bench_scale.py [--runs 20] [--circuits 1000] [--pg URL] [--pg-old-runs 3]

Data: synthetic googlenet-sized runs — torchvision googlenet's nine inception outputs (real
widths, 8 adjacent pairs, 3,146,752 scores per run) with a CLA-like score distribution: a third
exact zeros (scattered, the worst case for compression), the rest 0.18 · 10^-Gamma(2, 2.4), i.e.
spanning ~1e-17…0.18 with about a fifth of the non-zeros below float16's smallest subnormal (the
measured googlenet figures: 33 % zeros, 21 %). Mantissas are random, as averages of products are.
Circuits: `--circuits` of k = 10 per layer spread over the runs, drawn from overlapping pools.

Prints:
1. file size per googlenet run for each storage choice, from the same matrices;
2. per operation, today's layout (schema 0001: every pair an `edge` row) beside schema 0004's
   (`run_matrix` blobs + top edges + `circuit_edge`) on DuckDB, and schema 0004 on PostgreSQL when
   `--pg` (or CIRCUITS_TEST_PG_URL) names a server: refine's read of one run (warm: the median of
   reads in one session; cold: a fresh process opening the catalog and reading, as `circuits
   refine` does: `catalog` imported first, the driver's dialect (imported inside open_catalog)
   counted, the OS file cache not dropped), weighted overlap over
   all circuits, an `edges_v` query for one layer pair over all runs, writing one run, bulk row
   rates (COPY into PostgreSQL vs Arrow into DuckDB) and the in-place migration 0001 → 0004.
Targets: ≤ 9 MB per run lossless, refine's read ≤ 50 ms, weighted overlap over 1,000 circuits < 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402 (after the set-up above)
import sqlalchemy as sa  # noqa: E402 (after the set-up above)
from googlenet_shape import GOOGLENET, NAMES, WIDTHS  # noqa: E402 (bench/ is on sys.path when a bench runs)
from sqlalchemy.orm import Session  # noqa: E402 (after the set-up above)
from synthetic_runs import run_fields, write_circuits, write_run  # noqa: E402 (bench/ is on sys.path when a bench runs)
from timing import median_seconds  # noqa: E402 (bench/ is on sys.path when a bench runs)

from catalog import bulk, migrate, store  # noqa: E402 (after the set-up above)
from catalog.connect import build_engine, resolve_url  # noqa: E402 (after the set-up above)
from catalog.edge_select import DEFAULT_TOP_K, top_edge_mask  # noqa: E402 (after the set-up above)
from catalog.engine import close_all, open_catalog  # noqa: E402 (after the set-up above)
from catalog.matrix_codec import encode_matrix  # noqa: E402 (after the set-up above)
from catalog.models import Circuit, Run  # noqa: E402 (after the set-up above)
from queries.overlap import overlap_of_circuits, weighted_jaccard_matrix  # noqa: E402 (after the set-up above)

K, POOL, SHARED_POOL = 10, 40, 60  # circuit size per layer; a run's channel pool; the model-wide pool
PAIR_QUERY = (  # one layer pair over all runs, through the readable view
    "SELECT run_id, src_channel, dst_channel, score FROM edges_v "
    "WHERE src_layer = 'inception4e' AND dst_layer = 'inception5a' ORDER BY score DESC LIMIT 100"
)
# schema 0001's reader of one run's matrices and its internal-edge query (frozen copies)
OLD_READ = "SELECT src_neuron_id, dst_neuron_id, score FROM edge WHERE run_id = {run}"
OLD_INTERNAL = (
    "WITH members AS (SELECT circuit_id, neuron_id FROM circuit_neuron WHERE circuit_id IN ({ids})) "
    "SELECT s.circuit_id, e.src_neuron_id, e.dst_neuron_id, e.score FROM edge e "
    "JOIN members s ON s.neuron_id = e.src_neuron_id "
    "JOIN members d ON d.circuit_id = s.circuit_id AND d.neuron_id = e.dst_neuron_id "
    "WHERE e.run_id = {run} AND e.src_neuron_id IN (SELECT neuron_id FROM members) "
    "AND e.dst_neuron_id IN (SELECT neuron_id FROM members)"
)


def synthetic_run(rng: np.random.Generator) -> list[np.ndarray]:
    """One run's eight score matrices (see the module docstring for the distribution)."""
    out = []
    for m, n in zip(WIDTHS, WIDTHS[1:]):
        scores = (0.18 * 10.0 ** -rng.gamma(2.0, 2.4, size=(m, n))).astype(np.float32)
        scores[scores < 1e-17] = np.float32(1e-17)
        scores[rng.random((m, n)) < 0.33] = 0
        out.append(scores)
    return out


def circuit_channels(rng, n_runs: int, n_circuits: int) -> list[list[list[list[int]]]]:
    """Per run, its circuits' channels per layer (overlapping within a run, some across runs)."""
    shared = [rng.choice(w, SHARED_POOL, replace=False) for w in WIDTHS]
    out = []
    for r in range(n_runs):
        pools = [
            np.union1d(rng.choice(s, POOL // 2, replace=False), rng.choice(w, POOL // 2, replace=False))
            for s, w in zip(shared, WIDTHS)
        ]
        per_run = n_circuits // n_runs + (1 if r < n_circuits % n_runs else 0)
        out.append([[sorted(rng.choice(p, K, replace=False).tolist()) for p in pools] for _ in range(per_run)])
    return out


def storage_sizes(runs: list[list[np.ndarray]], tmp: Path) -> list[tuple[str, float, str]]:
    """(storage choice, MB per run, note) from the same matrices, each in a fresh file."""
    n = len(runs)
    ids = np.cumsum([0, *WIDTHS])  # neuron ids as a catalog would number them

    def rows(keep: Callable[[np.ndarray], np.ndarray]) -> pa.Table:
        parts = []
        for r, mats in enumerate(runs):
            for i, m in enumerate(mats):
                a, b = np.nonzero(keep(m))
                parts.append(
                    pa.table(
                        {
                            "run_id": np.full(len(a), r, np.int32),
                            "src": (ids[i] + a).astype(np.int32),
                            "dst": (ids[i + 1] + b).astype(np.int32),
                            "score": m[a, b],
                        }
                    )
                )
        return pa.concat_tables(parts)

    def duck_mb(name: str, table: pa.Table) -> float:
        path = tmp / f"{name}.duckdb"
        with duckdb.connect(str(path)) as con:
            con.register("t", table)
            con.execute("CREATE TABLE x AS SELECT * FROM t")
            con.execute("CHECKPOINT")
        return path.stat().st_size / n / 1e6

    blobs = [encode_matrix(m) for mats in runs for m in mats]
    plain = pa.Codec("zstd", compression_level=1)
    plain_mb = sum(len(plain.compress(m.tobytes(), asbytes=True)) for mats in runs for m in mats) / n / 1e6
    parquet = tmp / "parquet"
    parquet.mkdir()
    for r, mats in enumerate(runs):
        pair = np.concatenate([np.full(m.size, i, np.int8) for i, m in enumerate(mats)])
        src = np.concatenate([np.repeat(np.arange(m.shape[0], dtype=np.int16), m.shape[1]) for m in mats])
        dst = np.concatenate([np.tile(np.arange(m.shape[1], dtype=np.int16), m.shape[0]) for m in mats])
        score = np.concatenate([m.ravel() for m in mats])
        pq.write_table(
            pa.table({"pair": pair, "src": src, "dst": dst, "score": score}),
            parquet / f"run={r}.parquet",
            compression="zstd",
        )
    parquet_mb = sum(p.stat().st_size for p in parquet.iterdir()) / n / 1e6
    nonzero = np.concatenate([m[m != 0] for mats in runs for m in mats])
    underflow = float((nonzero.astype(np.float16) == 0).mean())
    top1 = rows(lambda m: m >= np.partition(m.ravel(), int(m.size * 0.99))[int(m.size * 0.99)])
    return [
        ("today: every pair an edge row, DuckDB", duck_mb("full", rows(lambda m: np.ones(m.shape, bool))), "lossless"),
        (
            "run_matrix blobs (f32-nz-shuffle-zstd), DuckDB",
            duck_mb("blobs", pa.table({"b": pa.array(blobs, pa.binary())})),
            "lossless",
        ),
        (
            f"top edges, K={DEFAULT_TOP_K} per neuron and pair, DuckDB",
            duck_mb("topk", rows(lambda m: top_edge_mask(m, DEFAULT_TOP_K))),
            "subset",
        ),
        ("zstd over plain float32 per pair (no bitmap/shuffle)", plain_mb, "lossless"),
        ("Parquet zstd per run, pair-local int16 ids", parquet_mb, "lossless"),
        ("top 1 % per pair rows, DuckDB", duck_mb("top1", top1), "subset"),
        (
            "float16 dense, uncompressed",
            sum(m.size for m in runs[0]) * 2 / 1e6,
            f"LOSSY: {underflow:.0%} of non-zeros become 0",
        ),
    ]


def write_new(url: str, runs, channels) -> tuple[list[int], list[int], float, float]:
    """Schema 0004 through catalog.store; returns (run ids, circuit ids, s per run, s per circuit)."""
    cat = open_catalog(url, create=True)
    run_ids, circuit_ids, run_s, circ_s = [], [], 0.0, 0.0
    with cat.session() as s, s.begin():
        model = store.ensure_model(
            s, name="googlenet", architecture="synthetic", weights_sha256="0" * 64, layers=GOOGLENET
        )
        concept = store.ensure_concept(s, "synthetic")
    for r, (mats, circuits) in enumerate(zip(runs, channels)):
        t = time.perf_counter()
        with cat.session() as s, s.begin():
            run_id = write_run(s, model, concept, mats, f"{r:064d}")
        run_s += time.perf_counter() - t
        t = time.perf_counter()
        with cat.session() as s, s.begin():
            circuit_ids += write_circuits(s, run_id, circuits)
        circ_s += time.perf_counter() - t
        run_ids.append(run_id)
    return run_ids, circuit_ids, run_s / len(runs), circ_s / max(1, len(circuit_ids))


def write_old(url: str, runs, channels) -> tuple[list[int], list[int], float]:
    """Schema 0001's layout (every pair a row); returns (run ids, circuit ids, edge rows/s)."""
    engine = build_engine(resolve_url(url), read_only=False, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        migrate.upgrade(conn, "0001")
    run_ids, circuit_ids, rows, secs = [], [], 0, 0.0
    with Session(engine) as s, s.begin():
        model = store.ensure_model(
            s, name="googlenet", architecture="synthetic", weights_sha256="0" * 64, layers=GOOGLENET
        )
        concept = store.ensure_concept(s, "synthetic")
    ids = [model.layer(n).neuron_ids for n in NAMES]
    src = np.concatenate([np.repeat(a, len(b)) for a, b in zip(ids, ids[1:])]).astype(np.int32)
    dst = np.concatenate([np.tile(b, len(a)) for a, b in zip(ids, ids[1:])]).astype(np.int32)
    for r, (mats, circuits) in enumerate(zip(runs, channels)):
        with Session(engine) as s, s.begin():
            run = Run(model_id=model.id, concept_id=concept, status="complete", **run_fields(f"{r:064d}", NAMES))
            s.add(run)
            s.flush()
            t = time.perf_counter()
            score = np.concatenate([m.ravel() for m in mats])
            bulk.insert_columns(
                s,
                "edge",
                {
                    "run_id": np.full(len(score), run.id, np.int32),
                    "src_neuron_id": src,
                    "dst_neuron_id": dst,
                    "score": score,
                },
            )
            secs += time.perf_counter() - t
            rows += len(score)
            for ch in circuits:
                c = Circuit(
                    run_id=run.id,
                    k=[K] * len(NAMES),
                    fixed=None,
                    sweeps=1,
                    converged=True,
                    objective=0.0,
                    objective_history=[0.0],
                )
                s.add(c)
                s.flush()
                members = np.concatenate([ids[i][ch[i]] for i in range(len(NAMES))])
                bulk.insert_columns(
                    s, "circuit_neuron", {"circuit_id": np.full(len(members), c.id), "neuron_id": members}
                )
                circuit_ids.append(c.id)
            run_ids.append(run.id)
    engine.dispose()
    return run_ids, circuit_ids, rows / secs


def old_refine_read(s: Session, run_id: int) -> list[np.ndarray]:
    """Schema 0001's read of one run into dense matrices (its fast path: rows in written order)."""
    if s.get_bind().dialect.name == "duckdb":
        table = bulk.driver_connection(s).sql(OLD_READ.format(run=int(run_id))).to_arrow_table()
        flat = table.column(2).to_numpy().copy()
    else:
        from catalog import pg_copy

        flat = pg_copy.copy_out(s, OLD_READ.format(run=int(run_id)), (">i4", ">i4", ">f4"))[2]
    sizes = np.cumsum([0, *(a * b for a, b in zip(WIDTHS, WIDTHS[1:]))])
    return [flat[sizes[i] : sizes[i + 1]].reshape(WIDTHS[i], WIDTHS[i + 1]) for i in range(len(WIDTHS) - 1)]


def old_weighted(s: Session, circuit_ids: list[int]) -> np.ndarray:
    """Schema 0001's weighted overlap: one internal-edge query per run over the edge rows."""
    by_run: dict[int, list[int]] = {}
    for cid, run in s.execute(
        sa.text(f"SELECT id, run_id FROM circuit WHERE id IN ({','.join(map(str, circuit_ids))})")
    ):
        by_run.setdefault(int(run), []).append(int(cid))
    parts = [s.execute(sa.text(OLD_INTERNAL.format(ids=",".join(map(str, c)), run=r))).all() for r, c in by_run.items()]
    rows = [row for part in parts for row in part]
    lookup = {c: i for i, c in enumerate(circuit_ids)}
    index = np.array([lookup[r[0]] for r in rows])
    keys = np.array([(int(r[1]) << 32) | int(r[2]) for r in rows], dtype=np.int64)
    return weighted_jaccard_matrix(index, keys, np.array([r[3] for r in rows], np.float32), len(circuit_ids))


def measure(
    session_factory: Callable[[], Session], run_ids: list[int], circuit_ids: list[int], old: bool
) -> dict[str, float]:
    """Refine's read of one run, weighted overlap over all circuits and the edges_v pair query."""
    out = {}
    with session_factory() as s:
        if old:
            out["read"] = median_seconds(lambda: old_refine_read(s, run_ids[0]), 2)
            out["overlap"] = median_seconds(lambda: old_weighted(s, circuit_ids), 1)
        else:
            out["read"] = median_seconds(lambda: store.read_run_matrices(s, run_ids[0]), 5)
            out["overlap"] = median_seconds(lambda: overlap_of_circuits(s, circuit_ids, "weighted"), 3)
        out["pair"] = median_seconds(lambda: s.execute(sa.text(PAIR_QUERY)).all(), 3)
    return out


COLD_READ = (
    "import sys, time\n"
    "from catalog import store\n"
    "from catalog.engine import open_catalog\n"
    "t = time.perf_counter()\n"
    "cat = open_catalog(sys.argv[1], read_only=True)\n"
    "with cat.session() as s:\n"
    "    store.read_run_matrices(s, int(sys.argv[2]))\n"
    "print(time.perf_counter() - t)\n"
)


def cold_read(url: str, run_id: int, repeat: int = 3) -> float:
    """Median seconds of refine's read in a fresh process, as `circuits refine` does it: open the
    catalog, then read one run's matrices (`catalog` imported first; the OS file cache is not dropped)."""
    times = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", COLD_READ, url, str(run_id)], capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def old_layout(url: str, runs, channels, *, migrate_too: bool) -> dict[str, float]:
    """Build schema 0001's layout, measure it, then (optionally) time the upgrade to 0004 in place."""
    run_ids, circuit_ids, rate = write_old(url, runs, channels)
    engine = build_engine(resolve_url(url), read_only=False, poolclass=sa.pool.NullPool)
    out = measure(lambda: Session(engine), run_ids, circuit_ids, old=True) | {"rows/s": rate}
    with Session(engine) as s:
        before = old_weighted(s, circuit_ids)
    if migrate_too:
        t = time.perf_counter()
        with engine.begin() as conn:
            migrate.upgrade(conn)
        out["migrate"] = (time.perf_counter() - t) / len(runs)
        with Session(engine) as s:
            after = overlap_of_circuits(s, circuit_ids, "weighted")
        assert np.allclose(before, after, rtol=1e-9, equal_nan=True), "the migration changed the weighted overlap"
    engine.dispose()
    return out


def new_layout(url: str, runs, channels) -> dict[str, float]:
    """Build schema 0004 through catalog.store and measure it."""
    run_ids, circuit_ids, run_s, circ_s = write_new(url, runs, channels)
    close_all()
    out = {"write": run_s, "circuit": circ_s, "read cold": cold_read(url, run_ids[0])}
    cat = open_catalog(url, read_only=True)
    if circuit_ids:
        out |= measure(cat.session, run_ids, circuit_ids, old=False)
    with cat.session() as s:
        out["blob MB"] = s.execute(sa.text("SELECT sum(n_bytes) FROM run_matrix")).scalar() / len(runs) / 1e6
        out["top rows"] = s.execute(sa.text("SELECT count(*) FROM edge")).scalar() / len(runs)
        if cat.backend == "postgresql":
            out["MB/run"] = s.execute(sa.text("SELECT pg_database_size(current_database())")).scalar() / len(runs) / 1e6
        else:
            size = bulk.driver_connection(s).execute("PRAGMA database_size").fetchall()[0]
            out["used MB/run"] = size[4] * size[2] / len(runs) / 1e6  # used blocks × block size
    cat.close()
    return out


def _pg_database(server: str, name: str) -> str:
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return sa.make_url(server).set(database=name).render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="googlenet-sized runs (100 gives the full-scale figure)")
    parser.add_argument("--circuits", type=int, default=1000)
    parser.add_argument("--pg", default=os.environ.get("CIRCUITS_TEST_PG_URL"), help="a PostgreSQL server URL")
    parser.add_argument("--pg-old-runs", type=int, default=3, help="runs of today's layout written to PostgreSQL")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    runs = [synthetic_run(rng) for _ in range(args.runs)]
    channels = circuit_channels(rng, args.runs, args.circuits)
    scores = sum(m.size for m in runs[0])
    print(
        f"edge storage benchmark: {args.runs} synthetic googlenet runs ({scores:,} scores each), "
        f"{args.circuits} circuits (k={K} x {len(NAMES)} layers); duckdb {duckdb.__version__}, "
        f"{os.cpu_count()} CPUs (shared)"
    )
    zeros = np.mean([float((m == 0).mean()) for m in runs[0]])
    print(
        f"scores: {zeros:.0%} zeros, non-zeros {min(float(m[m > 0].min()) for m in runs[0]):.0e} … "
        f"{max(float(m.max()) for m in runs[0]):.2f}"
    )
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        sizes = storage_sizes(runs, Path(tmp))
        results["duck old"] = old_layout(str(Path(tmp) / "old.duckdb"), runs, channels, migrate_too=True)
        results["duck new"] = new_layout(str(Path(tmp) / "new.duckdb"), runs, channels)
        results["duck new"]["MB/run"] = (Path(tmp) / "new.duckdb").stat().st_size / args.runs / 1e6
        new_layout(str(Path(tmp) / "runs.duckdb"), runs, [[] for _ in runs])  # no circuits
        bare_mb = (Path(tmp) / "runs.duckdb").stat().st_size / args.runs / 1e6
        results["duck old"]["MB/run"] = next(mb for name, mb, _ in sizes if name.startswith("today"))
        if args.pg:
            n = min(args.pg_old_runs, args.runs)
            results["pg new"] = new_layout(_pg_database(args.pg, "bench_scale_new"), runs, channels)
            old_channels = circuit_channels(np.random.default_rng(1), n, args.circuits)
            results["pg old"] = old_layout(
                _pg_database(args.pg, "bench_scale_old"), runs[:n], old_channels, migrate_too=False
            )
            close_all()
            for name in ("bench_scale_new", "bench_scale_old"):
                admin = sa.create_engine(args.pg, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
                with admin.connect() as conn:
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                admin.dispose()
        close_all()
    print()
    print(f"{'storage choice (same matrices)':<52} {'MB/run':>8}  note")
    print("-" * 90)
    for name, mb, note in sizes:
        print(f"{name:<52} {mb:>8.2f}  {note}")
    new = results["duck new"]
    print(
        f"{'schema 0004 catalog file, runs only (store.write_run)':<52} {bare_mb:>8.2f}  "
        f"lossless; blobs {new['blob MB']:.2f} MB + {new['top rows']:,.0f} top-edge rows per run"
    )
    print(
        f"{'schema 0004 catalog file with the circuits':<52} {new['MB/run']:>8.2f}  "
        f"{args.circuits / args.runs:.0f} circuits/run; blocks in use {new['used MB/run']:.2f} MB/run, "
        "the rest DuckDB free blocks"
    )
    print()
    cols = [("duck old", "DuckDB today"), ("duck new", "DuckDB 0004"), ("pg old", "PG today"), ("pg new", "PG 0004")]
    cols = [(k, label) for k, label in cols if k in results]
    print(f"{'operation':<44}" + "".join(f"{label:>14}" for _, label in cols) + f"{'target':>10}")
    print("-" * (54 + 14 * len(cols)))
    lines = [
        ("refine's read of one run, warm median (ms)", "read", 1e3, ""),
        ("refine's read, fresh process: open + read (ms)", "read cold", 1e3, "<= 50"),
        (f"weighted overlap, {args.circuits} circuits (s)", "overlap", 1, "< 1"),
        ("edges_v, one layer pair, all runs (s)", "pair", 1, ""),
        ("catalog size per run (MB)", "MB/run", 1, "<= 9"),
        ("write one run incl. commit (s)", "write", 1, ""),
        ("write one circuit incl. commit (ms)", "circuit", 1e3, ""),
        ("bulk edge rows/s (COPY / Arrow), M", "rows/s", 1e-6, ""),
        ("migration 0001 -> 0004 in place (s/run)", "migrate", 1, ""),
    ]
    for label, key, scale, target in lines:
        cells = "".join(f"{results[k][key] * scale:>14.3f}" if key in results[k] else f"{'-':>14}" for k, _ in cols)
        print(f"{label:<44}{cells}{target:>10}")
    if "pg old" in results:
        print(f"(PG today: {min(args.pg_old_runs, args.runs)} runs, the {args.circuits} circuits spread over them)")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
