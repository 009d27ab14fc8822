"""`circuits db vacuum`: a DuckDB catalog file shrinks to its live rows and keeps every row, index,
sequence and view; PostgreSQL is vacuumed and analysed (both backends)."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest
from typer.testing import CliRunner

from catalog.admin import catalog_status
from catalog.connect import DUCKDB_BLOCK_SIZE
from catalog.engine import close_catalogs_of, open_catalog
from catalog.sql import run_query
from catalog.vacuum import vacuum_catalog
from circuits.cli.main import app

runner = CliRunner()


def _fill(db: str, rows: int) -> None:
    cat = open_catalog(db)
    with cat.session() as s, s.begin():
        s.connection().exec_driver_sql(
            "INSERT INTO concept (id, name, description) SELECT nextval('concept_id_seq'), "
            f"'c' || CAST(i AS VARCHAR), repeat('x', 200) FROM generate_series(1, {rows}) AS g(i)"
        )
    cat.close()


def _names(db: str) -> list[str]:
    close_catalogs_of(db)
    cat = open_catalog(db, read_only=True)
    try:
        return [r[0] for r in run_query(cat, "SELECT name FROM concept ORDER BY id").rows]
    finally:
        cat.close()


@pytest.mark.slow
def test_duckdb_file_shrinks_and_keeps_every_row(catalog_path):
    db = str(catalog_path)
    _fill(db, 30_000)
    cat = open_catalog(db)
    with cat.session() as s, s.begin():
        s.connection().exec_driver_sql("DELETE FROM concept WHERE id > 2000")
    cat.close()
    kept = _names(db)
    close_catalogs_of(db)
    result = vacuum_catalog(db)
    assert result.backend == "duckdb" and result.after_bytes < result.before_bytes / 2, result
    assert _names(db) == kept and len(kept) == 2000
    assert catalog_status(db).state == "up to date"
    cat = open_catalog(db)  # writable, and the id sequence goes on where it was
    with cat.session() as s, s.begin():
        s.connection().exec_driver_sql("INSERT INTO concept (id, name) VALUES (nextval('concept_id_seq'), 'after')")
    cat.close()
    with duckdb.connect(db, read_only=True) as con:
        assert con.sql("SELECT id FROM concept WHERE name = 'after'").fetchall() == [(30_001,)]
        assert con.sql("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchall()[0][0] > 0
    assert not catalog_path.with_name(catalog_path.name + ".vacuum-tmp").exists()
    again = runner.invoke(app, ["db", "vacuum", "--db", db])
    assert (
        again.exit_code == 0 and again.stdout.startswith(f"catalog {db}: ") and "free blocks given back" in again.stdout
    )


def test_vacuum_runs_on_both_backends_and_keeps_rows(db_url, backend):
    _fill(db_url, 50)
    before = _names(db_url)
    close_catalogs_of(db_url)
    result = runner.invoke(app, ["db", "vacuum", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert ("vacuumed and analysed" in result.stdout) == (backend == "postgresql")
    assert _names(db_url) == before


def test_a_missing_file_is_one_line(tmp_path):
    result = runner.invoke(app, ["db", "vacuum", "--db", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 1 and result.stderr.startswith("error: no catalog at") and result.stderr.count("\n") == 1


def test_a_corrupt_file_or_one_in_use_is_named_as_such_and_left_as_it_was(tmp_path, catalog_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"not a database" * 400)
    r = runner.invoke(app, ["db", "vacuum", "--db", str(bad)])
    assert r.exit_code == 1 and "is not a DuckDB catalog" in r.output and "another process" not in r.output
    assert bad.read_bytes() == b"not a database" * 400
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("bad")) == ["bad.duckdb"]

    close_catalogs_of(str(catalog_path))
    before = catalog_path.read_bytes()
    hold = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(catalog_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        r = runner.invoke(app, ["db", "vacuum", "--db", str(catalog_path)])
    finally:
        holder.kill()
        holder.wait()
    assert r.exit_code == 1 and "is in use by another process" in r.output, r.output
    assert catalog_path.read_bytes() == before


def test_new_duckdb_catalogs_and_vacuumed_ones_use_the_small_block_size(tmp_path):
    def block_size(path) -> int:
        con = duckdb.connect(str(path), read_only=True)
        try:
            return con.sql("SELECT block_size FROM pragma_database_size()").fetchall()[0][0]
        finally:
            con.close()

    new = tmp_path / "new.duckdb"
    open_catalog(new, create=True)
    close_catalogs_of(str(new))
    old = tmp_path / "old.duckdb"  # as catalogs were made before: DuckDB's default 256 kB blocks
    duckdb.connect(str(old)).close()
    open_catalog(old, create=True)
    close_catalogs_of(str(old))
    assert (block_size(new), block_size(old)) == (DUCKDB_BLOCK_SIZE, 262_144)
    vacuum_catalog(str(old))
    assert block_size(old) == DUCKDB_BLOCK_SIZE
    assert catalog_status(str(old)).current == catalog_status(str(new)).current  # still a catalog
