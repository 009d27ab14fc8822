"""Storage as a user sees it: catalog growth per real ingest, on DuckDB and PostgreSQL.

    python bench/bench_storage.py [--runs 3] [--images 8] [--k 10] [--pg URL]

Each run is a real `circuits ingest googlenet` in its own process, as a user runs it: random-init
googlenet weights (no download), `--images` synthetic images of one concept per run, k circuit
neurons per layer, its neuron patches and example thumbnails, into one catalog. After each ingest
the bench records what the catalog takes:

- DuckDB: the file's size (what `ls` shows: used blocks, DuckDB's free blocks, the header), its
  used and free 256 kB blocks, and the bytes in it of encoded scores (`run_matrix` blobs), patches,
  their heat-maps, reference-set patches and thumbnails (image bytes), top edges and circuits (row
  counts);
- PostgreSQL: `pg_database_size` and `pg_total_relation_size` (heap + TOAST + indexes) per table.

"/run" is the growth from the first run to the last divided by the runs between (the first run
also pays the fixed cost of an empty catalog); after `circuits db vacuum`, (size − the empty
catalog's) / runs. The synthetic rows of `bench/bench_scale.py` (scores only) are the other
figure this one stands beside; random-init scores are not a trained network's, so the scores'
bytes are printed too (trained googlenet: 8.25–8.39 MB a run).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "circuits"]
MB = 1024 * 1024


def make_images(folder: Path, n: int, seed: int) -> None:
    """`n` 224-px photo-like images: smooth colour fields with grain (not noise, not flat)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize((224, 224), Image.BICUBIC)
        pixels = np.clip(np.asarray(coarse) + rng.normal(0, 8, (224, 224, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")


def ingest(db: str, images: Path, concept: str, k: int) -> None:
    cmd = [*CLI, "ingest", "googlenet", "--concept", concept, "--images", str(images), "--k", str(k), "--db", db]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"ingest failed: {r.stderr[-2000:]}")


def duckdb_sizes(path: Path) -> dict[str, float]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        total, used, free, block = con.sql(
            "SELECT total_blocks, used_blocks, free_blocks, block_size FROM pragma_database_size()"
        ).fetchall()[0]

        def one(q: str) -> float:
            return float(con.sql(q).fetchall()[0][0] or 0)

        return {
            "file": path.stat().st_size / MB,
            "used blocks": used * block / MB,  # 64 kB blocks since #22 (256 kB before)
            "free blocks": free * block / MB,
            "scores (blobs)": one("SELECT sum(n_bytes) FROM run_matrix") / MB,
            "patches (bytes)": one("SELECT sum(octet_length(data)) FROM neuron_patch") / MB,
            "heat-maps (bytes)": one("SELECT sum(octet_length(heatmap)) FROM neuron_patch") / MB,
            "reference (bytes)": one(
                "SELECT sum(octet_length(data) + coalesce(octet_length(heatmap), 0)) FROM neuron_reference_patch"
            )
            / MB,
            "thumbnails (bytes)": one("SELECT sum(octet_length(data)) FROM image_thumbnail") / MB,
            "patch rows": one("SELECT count(*) FROM neuron_patch"),
            "top-edge rows": one("SELECT count(*) FROM edge"),
            "circuit_edge rows": one("SELECT count(*) FROM circuit_edge"),
        }
    finally:
        con.close()


PG_TABLES = (
    "run_matrix",
    "neuron_patch",
    "neuron_reference_patch",
    "image_thumbnail",
    "edge",
    "circuit_edge",
    "neuron",
)


def pg_sizes(url: str) -> dict[str, float]:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            out = {"database": conn.scalar(sa.text("SELECT pg_database_size(current_database())")) / MB}
            for t in PG_TABLES:
                out[t] = conn.scalar(sa.text(f"SELECT pg_total_relation_size('{t}')")) / MB
            out["scores (blobs)"] = (conn.scalar(sa.text("SELECT sum(n_bytes) FROM run_matrix")) or 0) / MB
            out["patches (bytes)"] = (
                conn.scalar(
                    sa.text("SELECT sum(octet_length(data) + coalesce(octet_length(heatmap), 0)) FROM neuron_patch")
                )
                or 0
            ) / MB
            return out
    finally:
        engine.dispose()


def fresh_pg_database(server: str) -> str:
    import secrets

    import sqlalchemy as sa

    name = f"bench_storage_{secrets.token_hex(4)}"
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return str(sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False))


def table(rows: list[dict[str, float]], label: str) -> None:
    keys = list(rows[0])
    print(f"\n{label}: after each ingest (MB unless rows)")
    print(f"| {'runs':>4} | " + " | ".join(f"{k:>12}" for k in keys) + " |")
    for i, row in enumerate(rows, 1):
        print(f"| {i:>4} | " + " | ".join(f"{row[k]:>12.2f}" for k in keys) + " |")
    if len(rows) > 1:
        per = {k: (rows[-1][k] - rows[0][k]) / (len(rows) - 1) for k in keys}
        print("| /run | " + " | ".join(f"{per[k]:>12.2f}" for k in keys) + " |  (growth from run 1 to the last)")


def vacuum(db: str) -> str:
    r = subprocess.run([*CLI, "db", "vacuum", "--db", db], cwd=ROOT, capture_output=True, text=True)
    return (r.stdout or r.stderr).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images", type=int, default=8, help="images per run (few: the machine is shared)")
    parser.add_argument("--k", type=int, default=10, help="circuit neurons per layer")
    parser.add_argument("--pg", default=os.environ.get("CIRCUITS_TEST_PG_URL"), help="a PostgreSQL server URL")
    parser.add_argument("--no-duckdb", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folders = []
        for r in range(args.runs):
            make_images(tmp / f"images{r}", args.images, seed=r)
            folders.append(tmp / f"images{r}")
        backends = ([] if args.no_duckdb else ["duckdb"]) + (["postgresql"] if args.pg else [])
        for backend in backends:
            db = str(tmp / "catalog.duckdb") if backend == "duckdb" else fresh_pg_database(args.pg)
            sizes = duckdb_sizes if backend == "duckdb" else pg_sizes
            subprocess.run([*CLI, "db", "init", "--db", db], cwd=ROOT, check=True, capture_output=True)
            empty = sizes(Path(db) if backend == "duckdb" else db)  # type: ignore[arg-type]
            rows = []
            for r, folder in enumerate(folders):
                ingest(db, folder, f"concept{r}", args.k)
                rows.append(sizes(Path(db) if backend == "duckdb" else db))  # type: ignore[arg-type]
                print(f"{backend}: run {r + 1} stored", file=sys.stderr, flush=True)
            table(rows, f"{backend}, googlenet random-init, {args.images} images, k={args.k}")
            print(vacuum(db))
            after = sizes(Path(db) if backend == "duckdb" else db)  # type: ignore[arg-type]
            first = "file" if backend == "duckdb" else "database"
            print(
                f"empty catalog {empty[first]:.2f} MB; after vacuum {after[first]:.2f} MB for {args.runs} runs: "
                f"{(after[first] - empty[first]) / args.runs:.2f} MB per run"
            )


if __name__ == "__main__":
    main()
