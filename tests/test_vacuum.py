"""`circuits db vacuum`: a DuckDB file with free blocks is compacted with its schema intact;
PostgreSQL is VACUUMed (docs/results.md, "Catalog scale and storage")."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from catalog.admin import catalog_status, vacuum_catalog
from catalog.engine import close_all, open_catalog
from catalog.errors import CatalogError
from circuits.cli.main import app

runner = CliRunner()


def _schema(path: Path) -> tuple[list, list, list, list]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return (
            con.sql("SELECT table_name, sql FROM duckdb_tables() ORDER BY 1").fetchall(),
            con.sql(
                "SELECT table_name, constraint_type, constraint_text FROM duckdb_constraints() ORDER BY ALL"
            ).fetchall(),
            con.sql("SELECT sequence_name, last_value FROM duckdb_sequences() ORDER BY 1").fetchall(),
            con.sql("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall(),
        )
    finally:
        con.close()


def _free_blocks(path: Path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return int(con.sql("SELECT free_blocks FROM pragma_database_size()").fetchall()[0][0])
    finally:
        con.close()


def test_vacuum_compacts_a_duckdb_file_after_a_bulk_delete(catalog_path: Path):
    close_all()
    con = duckdb.connect(str(catalog_path))
    con.execute(
        "INSERT INTO concept (id, name) VALUES (nextval('concept_id_seq'), 'kept')"
    )  # advances a sequence the copy must keep
    con.execute("INSERT INTO run_matrix_word SELECT 1, i, (hash(i) >> 1)::BIGINT FROM range(1000000) t(i)")
    con.execute("CHECKPOINT")
    con.execute("INSERT INTO run_matrix_word SELECT 2, i, i FROM range(1000) t(i)")
    con.execute(
        "DELETE FROM run_matrix_word WHERE run_id = 1"
    )  # a deleted run's 8 MB of words: blocks free in the file
    con.execute("CHECKPOINT")
    con.close()
    before_schema, before_size = _schema(catalog_path), catalog_path.stat().st_size
    assert _free_blocks(catalog_path) > 10

    r = runner.invoke(app, ["db", "vacuum", "--db", str(catalog_path)])

    assert r.exit_code == 0, r.output
    assert r.output.startswith("copy: ") and "given back" in r.output
    after = catalog_path.stat().st_size
    assert after < before_size / 2 and _free_blocks(catalog_path) == 0
    assert _schema(catalog_path) == before_schema  # tables, keys, sequences and views as they were
    assert catalog_status(catalog_path).state == "up to date"
    assert not list(catalog_path.parent.glob(f".{catalog_path.name}.vacuum-*"))  # no temporary file left
    again = vacuum_catalog(catalog_path)
    assert again.method == "checkpoint" and again.free_blocks_before == 0  # nothing to copy
    cat = open_catalog(catalog_path)
    try:
        with cat.session() as s:
            assert s.connection().exec_driver_sql("SELECT count(*), sum(word) FROM run_matrix_word").one() == (
                1000,
                sum(range(1000)),
            )
        with cat.writing() as s:
            s.connection().exec_driver_sql("INSERT INTO concept (id, name) VALUES (nextval('concept_id_seq'), 'next')")
        with cat.session() as s:
            ids = s.connection().exec_driver_sql("SELECT id FROM concept ORDER BY id").scalars().all()
        assert ids[-1] == ids[-2] + 1  # the sequence went on where it was, no id reused
    finally:
        cat.close()


def test_vacuum_refuses_a_file_that_is_not_a_catalog(tmp_path: Path):
    path = tmp_path / "other.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(CatalogError, match="not a circuits catalog"):
        vacuum_catalog(path)
    r = runner.invoke(app, ["db", "vacuum", "--db", str(tmp_path / "missing.duckdb")])
    assert r.exit_code == 1 and "no catalog at" in r.output


@pytest.mark.pg
def test_vacuum_on_postgresql(pg_url: str):
    r = runner.invoke(app, ["db", "vacuum", "--db", pg_url])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("vacuum: ")
    full = vacuum_catalog(pg_url, full=True)
    assert full.method == "vacuum full" and full.bytes_after > 0 and full.free_blocks_before is None
