"""Bounded reads at catalog scale: every listing, the web home page and
`circuits overlap` on a DuckDB catalog of `--runs` runs (and with `--pg`, the same rows on
PostgreSQL), each command in a fresh process.

    python bench/bench_scale_reads.py [--runs 10000] [--circuits-per-run 5] [--k 5] [--keep PATH]
                                      [--pg postgresql+psycopg://USER@HOST:PORT/DB]

Data: googlenet's nine inception layers (real widths), one concept per run (so `overlap` without
--concepts faces `--runs` concepts), `--circuits-per-run` circuits of k per layer per run drawn from
overlapping channel pools, each with its internal edges (8 layer pairs × k², CLA-like scores) in
`circuit_edge`, and 16 example images per concept. Rows are written straight into the tables (no
score matrices: none of these commands reads them), so building 10,000 runs takes about a minute.
With `--pg`, a database `bench_scale_reads` is made afresh on that server (dropped first if it
exists, left behind afterwards for a look), every table of the DuckDB catalog is copied into it
(CSV through `COPY … FROM STDIN`, then ANALYZE), and the same commands run against it.

Prints, per command: wall seconds of a fresh `circuits …` process (Python start-up included), the
child's peak RSS, and the bytes it printed (the home page: the HTML a browser receives).
Targets: every command and page < 2 s and < 1 GB; weighted overlap of 1,000 concepts < 5 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402 (after the set-up above)
import sqlalchemy as sa  # noqa: E402 (after the set-up above)
from googlenet_shape import GOOGLENET  # noqa: E402 (bench/ is on sys.path when a bench runs)

from catalog import store  # noqa: E402 (after the set-up above)
from catalog.engine import close_all, driver_connection, open_catalog  # noqa: E402 (after the set-up above)
from catalog.models import Base  # noqa: E402 (after the set-up above)
from queries.overlap import MAX_OVERLAP_CIRCUITS  # noqa: E402 (after the set-up above)

POOL = 40  # a run's channel pool per layer: its circuits overlap
IMPORTS = (
    "import catalog.engine, catalog.sql, queries.listing_pages, queries.overlap, circuits.cli.render, duckdb, pyarrow"
)
HOME = (
    "import sys, time; t = time.perf_counter()\n"
    "from catalog.engine import open_catalog\n"
    "from circuits.web.home import home_view\n"
    "from circuits.web.pages import Pages\n"
    "cat = open_catalog(sys.argv[1], read_only=True)\n"
    "with cat.session() as s:\n"
    "    html = Pages(cat.display).home(home_view(s, sys.argv[2] if len(sys.argv) > 2 else ''))\n"
    "sys.stdout.write(html)\n"
)


def build(path: Path, n_runs: int, per_run: int, k: int, seed: int = 0) -> None:
    """The catalog at `path` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    cat = open_catalog(str(path), create=True)
    with cat.session() as s, s.begin():
        model = store.ensure_model(
            s, name="googlenet", architecture="GoogLeNet", weights_sha256="a" * 64, layers=GOOGLENET
        )
    close_all()
    con = duckdb.connect(str(path))
    neuron = con.sql(
        f"SELECT l.position, n.channel, n.id FROM neuron n JOIN layer l ON l.id = n.layer_id WHERE l.model_id = {model.id} "
        "ORDER BY l.position, n.channel"
    ).fetchnumpy()
    first = {int(p): int(neuron["id"][neuron["position"] == p].min()) for p in np.unique(neuron["position"])}
    starts = np.array([first[p] for p in sorted(first)], dtype=np.int64)
    widths = np.array([w for _, w in GOOGLENET])
    names = json.dumps([n for n, _ in GOOGLENET])
    now = dt.datetime(2026, 1, 1)
    ids = np.arange(1, n_runs + 1)
    con.register(
        "concepts",
        pa.table(
            {"id": ids.astype(np.int32), "name": [f"concept-{i:05d}" for i in ids], "description": [None] * n_runs}
        ),
    )
    con.execute("INSERT INTO concept SELECT * FROM concepts")
    hexes = [f"{i:064x}" for i in ids]
    runs = pa.table(
        {
            "id": ids.astype(np.int32),
            "model_id": np.full(n_runs, model.id, np.int32),
            "concept_id": ids.astype(np.int32),
            "layer_names": [names] * n_runs,
            "params": ["{}"] * n_runs,
            "image_set_sha256": hexes,
            "n_images": np.full(n_runs, 16, np.int32),
            "provenance_key": hexes,
            "library_versions": ["{}"] * n_runs,
            "device": ["cpu"] * n_runs,
            "status": ["complete"] * n_runs,
            "error": [None] * n_runs,
            "started_at": [now] * n_runs,
            "finished_at": [now] * n_runs,
            "seconds": np.full(n_runs, 12.5),
        }
    )
    con.register("runs", runs)
    con.execute("INSERT INTO run SELECT * FROM runs")
    con.execute("INSERT INTO run_key SELECT provenance_key, id FROM runs")
    img = np.repeat(ids, 16)
    con.register(
        "images",
        pa.table(
            {
                "id": np.arange(1, len(img) + 1, dtype=np.int32),
                "concept_id": img.astype(np.int32),
                "image_set_sha256": [hexes[i - 1] for i in img],
                "position": np.tile(np.arange(16, dtype=np.int32), n_runs),
                "sha256": [f"{j:064x}" for j in range(len(img))],
                "source_path": [f"/data/{i}/{j % 16}.png" for j, i in enumerate(img)],
            }
        ),
    )
    con.execute("INSERT INTO example_image SELECT * FROM images")
    n_c = n_runs * per_run
    cid = np.arange(1, n_c + 1)
    circuit_run = np.repeat(ids, per_run)
    k_json = json.dumps([k] * len(GOOGLENET))
    con.register(
        "circuits",
        pa.table(
            {
                "id": cid.astype(np.int32),
                "run_id": circuit_run.astype(np.int32),
                "k": [k_json] * n_c,
                "fixed": [None] * n_c,
                "sweeps": np.full(n_c, 2, np.int32),
                "converged": np.ones(n_c, bool),
                "objective": rng.random(n_c),
                "objective_history": ["[1.0]"] * n_c,
                "created_at": [now] * n_c,
            }
        ),
    )
    con.execute("INSERT INTO circuit SELECT * FROM circuits")
    # channels: per run a pool per layer; each circuit k of its run's pool
    chunk = 2000
    for r0 in range(0, n_runs, chunk):
        r_ids = ids[r0 : r0 + chunk]
        pools = [rng.integers(0, w, size=(len(r_ids), POOL)) for w in widths]  # (runs, POOL) per layer
        members, edges = [], []
        for j, r in enumerate(r_ids):
            for c in range((r - 1) * per_run + 1, r * per_run + 1):
                layers = [starts[i] + np.unique(rng.choice(pools[i][j], k, replace=False)) for i in range(len(widths))]
                members.append(np.stack(np.broadcast_arrays(c, np.concatenate(layers)), axis=1))
                for i in range(len(widths) - 1):
                    src, dst = np.meshgrid(layers[i], layers[i + 1], indexing="ij")
                    score = (0.18 * 10.0 ** -rng.gamma(2.0, 2.4, size=src.size)).astype(np.float32)
                    edges.append((np.full(src.size, c), np.full(src.size, r), src.ravel(), dst.ravel(), score))
        m = np.concatenate(members)
        con.register("cn", pa.table({"circuit_id": m[:, 0].astype(np.int32), "neuron_id": m[:, 1].astype(np.int32)}))
        con.execute("INSERT INTO circuit_neuron SELECT * FROM cn")
        e = [np.concatenate(x) for x in zip(*edges)]
        con.register(
            "ce",
            pa.table(
                {
                    "circuit_id": e[0].astype(np.int32),
                    "run_id": e[1].astype(np.int32),
                    "src_neuron_id": e[2].astype(np.int32),
                    "dst_neuron_id": e[3].astype(np.int32),
                    "score": e[4],
                }
            ),
        )
        con.execute("INSERT INTO circuit_edge SELECT * FROM ce")
    con.execute("CHECKPOINT")
    con.close()


def copy_to_postgres(path: Path, server: str, name: str = "bench_scale_reads") -> str:
    """A fresh database `name` on `server` holding every row of the DuckDB catalog at `path`; its URL."""
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    cat = open_catalog(url, create=True)  # the schema at head, through the migrations
    src = duckdb.connect(str(path), read_only=True)
    with tempfile.TemporaryDirectory() as tmp, cat.session() as s, s.begin():
        raw = driver_connection(s)
        for table in Base.metadata.sorted_tables:  # parents before children (foreign keys)
            described = src.execute(f"DESCRIBE {table.name}").fetchall()  # (name, type, …) per column
            cols = [r[0] for r in described]
            if (
                any(r[1] == "BLOB" for r in described)
                and src.execute(f"SELECT count(*) FROM {table.name}").fetchall()[0][0]
            ):
                raise SystemExit(
                    f"{table.name} holds BLOBs, which this CSV copy does not carry: use a catalog this bench built"
                )
            csv = Path(tmp) / f"{table.name}.csv"
            src.execute(f"COPY {table.name} TO '{csv}' (FORMAT csv, HEADER false)")
            with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN (FORMAT csv)") as cp:
                with csv.open("rb") as f:
                    while block := f.read(1 << 20):
                        cp.write(block)
            if "id" in cols:  # later inserts must not collide with the copied ids
                with raw.cursor() as cur:
                    cur.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT coalesce(max(id), 0) + 1 FROM {table.name}), false) "
                        f"WHERE pg_get_serial_sequence('{table.name}', 'id') IS NOT NULL"
                    )
    src.close()
    cat.close()
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))  # planner statistics and visibility map, as a DBA would
        size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
    admin.dispose()
    print(f"copied into PostgreSQL database {name}: {size / 1e6:.0f} MB")
    return url


def measure(args: list[str], label: str) -> tuple[str, float, float, int, int]:
    """(label, seconds, peak RSS MB, bytes printed, exit code) of one fresh process; the peak is
    GNU time's (%M): the child's own, not this (large) process's image it was forked from."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        t = time.perf_counter()
        code = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *args], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        ).returncode
        seconds = time.perf_counter() - t
        peak_kb = float(rss.read().strip().splitlines()[-1])
        return label, seconds, peak_kb / 1024, out.tell(), code


def in_process(db: str) -> None:
    """The library calls behind the commands, in this process (no start-up): min and median of 3."""
    from circuits.cli.render import render
    from circuits.web.home import home_view
    from circuits.web.pages import Pages
    from queries.graphs import query_arrow
    from queries.listing_pages import list_page
    from queries.overlap import overlap_matrix

    cat = open_catalog(db, read_only=True)
    print(f"\n{'library call, in process':<44} {'min s':>7} {'median s':>9}")
    with cat.session() as s:
        last = int(query_arrow(s, "SELECT max(id) AS m FROM run").to_pylist()[0]["m"] or 0)
        calls = [
            *((f"list_page {w}", lambda w=w: list_page(s, w)) for w in ("runs", "circuits", "concepts", "models")),
            ("list_page runs, a late page", lambda: list_page(s, "runs", after=max(0, last - 150))),
            ("list_page circuits, searched", lambda: list_page(s, "circuits", search="concept-0999")),
            ("home page: home_view + HTML", lambda: Pages(cat.display).home(home_view(s))),
            ("overlap jaccard, top 50", lambda: overlap_matrix(s, "googlenet")),
            ("overlap weighted, top 50", lambda: overlap_matrix(s, "googlenet", metric="weighted")),
            ("overlap weighted, 1,000 concepts", lambda: overlap_matrix(s, "googlenet", metric="weighted", top=1000)),
            (
                "  + its rows and CSV text",
                lambda: render(overlap_matrix(s, "googlenet", metric="weighted", top=1000).rows(), "csv"),
            ),
        ]
        for label, fn in calls:
            times = []
            for _ in range(3):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            times.sort()
            print(f"{label:<44} {times[0]:7.3f} {times[1]:9.3f}", flush=True)
    cat.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--circuits-per-run", type=int, default=5)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="build (or reuse) the catalog at this path")
    ap.add_argument("--pg", help="a PostgreSQL server URL: also copy the catalog there and measure it")
    args = ap.parse_args()
    path = args.keep or Path(tempfile.mkdtemp()) / "reads.duckdb"
    if not path.exists():
        t = time.perf_counter()
        build(path, args.runs, args.circuits_per_run, args.k)
        print(
            f"built {args.runs:,} runs, {args.runs * args.circuits_per_run:,} circuits in {time.perf_counter() - t:.0f} s"
        )
    print(f"catalog {path}: {path.stat().st_size / 1e6:.0f} MB")
    targets = [("DuckDB", str(path))]
    if args.pg:
        t = time.perf_counter()
        targets.append(("PostgreSQL", copy_to_postgres(path, args.pg)))
        print(f"copied in {time.perf_counter() - t:.0f} s")
    for backend, db in targets:
        print(f"\n{backend}")
        run_commands(db, args.runs)
        in_process(db)


def run_commands(db: str, n_runs: int) -> None:
    """Each command in a fresh process against the catalog `db` (a path or URL): one line each."""
    cli = [str(Path(sys.executable).parent / "circuits")]
    at = ["--db", db]
    commands = [
        ([*cli, "--help"], "circuits --help (start-up)"),
        ([sys.executable, "-c", IMPORTS], "imports of a read command, no query"),
        ([*cli, "list", "runs", *at], "list runs (first page)"),
        ([*cli, "list", "runs", "--after", str(n_runs - 150), *at], "list runs --after (a late page)"),
        ([*cli, "list", "circuits", *at], "list circuits (first page)"),
        ([*cli, "list", "circuits", "--search", "concept-0999", *at], "list circuits --search"),
        ([*cli, "list", "concepts", *at], "list concepts"),
        ([*cli, "list", "models", *at], "list models"),
        ([sys.executable, "-c", HOME, db], "home page (HTML)"),
        ([sys.executable, "-c", HOME, db, "concept-00"], "home page, searched"),
        ([*cli, "overlap", "--model", "googlenet", *at], "overlap (jaccard, default top 50)"),
        ([*cli, "overlap", "--model", "googlenet", "--metric", "weighted", *at], "overlap weighted (top 50)"),
        (
            [*cli, "overlap", "--model", "googlenet", "--top", str(n_runs), *at],
            "overlap, all concepts" + (" (refused)" if n_runs > MAX_OVERLAP_CIRCUITS else ""),
        ),
        (
            [*cli, "overlap", "--model", "googlenet", "--metric", "weighted", "--top", "1000", "-f", "csv", *at],
            "overlap weighted, 1,000 concepts",
        ),
    ]
    print(f"{'command':<36} {'seconds':>8} {'peak MB':>8} {'bytes out':>10} {'exit':>5}")
    for argv, label in commands:
        name, seconds, rss, size, code = measure(argv, label)
        print(f"{name:<36} {seconds:8.2f} {rss:8.0f} {size:10,} {code:5d}", flush=True)


if __name__ == "__main__":
    main()
