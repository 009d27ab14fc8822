"""`circuits db init|upgrade|status` and `circuits sql` through the real CLI on DuckDB files."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil

import duckdb
import numpy as np
import pytest
from _helpers_catalog import write_run
from typer.testing import CliRunner

from catalog import revision, store
from catalog.connect import build_engine, resolve_url
from catalog.engine import close_catalogs_of, open_catalog
from catalog.views import VIEWS, create_all
from circuits.cli.main import app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def _filled_template(tmp_path_factory, _catalog_template):
    path = tmp_path_factory.mktemp("filled") / "filled.duckdb"
    shutil.copyfile(_catalog_template, path)
    _write_one_run(path)
    return path


@pytest.fixture
def filled(_filled_template, catalog_path):
    """The fresh catalog with one model, concept and run (2×3 scores 1…6)."""
    shutil.copyfile(_filled_template, catalog_path)
    return catalog_path


def _write_one_run(path) -> None:
    cat = open_catalog(path)
    with cat.session() as s, s.begin():
        model = store.ensure_model(
            s, name="toy", architecture="cnn", weights_sha256="a" * 64, layers=[("l0", 2), ("l1", 3)]
        )
        concept = store.ensure_concept(s, "star")
        matrices = [np.arange(1, 7, dtype=np.float32).reshape(2, 3)]  # all non-zero: all top edges
        write_run(s, model, concept, matrices, n_images=1)
    cat.close()


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_db_init_status_upgrade(tmp_path):
    path = tmp_path / "c.duckdb"
    result = _invoke("db", "init", "--db", str(path))
    assert result.exit_code == 0, result.output
    assert f"created catalog {path} (schema {revision.SCHEMA_HEAD})" in result.output
    close_catalogs_of(path)
    with duckdb.connect(str(path), read_only=True) as con:
        names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert {"model", "layer", "neuron", "run", "edge", "circuit", "evaluation"} <= names
    assert views == set(VIEWS)
    assert "already exists at schema" in _invoke("db", "init", "--db", str(path)).output
    status = _invoke("db", "status", "--db", str(path))
    assert status.exit_code == 0 and f"current:  {revision.SCHEMA_HEAD}" in status.output
    assert "state:    up to date" in status.output
    upgrade = _invoke("db", "upgrade", "--db", str(path))
    assert upgrade.exit_code == 0 and "up to date" in upgrade.output


def test_outdated_catalog_status_and_refusal(catalog_path, monkeypatch):
    monkeypatch.setattr(revision, "SCHEMA_HEAD", f"{int(revision.SCHEMA_HEAD) + 1:04d}")
    status = _invoke("db", "status", "--db", str(catalog_path))
    assert "state:    outdated" in status.output
    assert f"next:     circuits db upgrade --db {catalog_path}" in status.output
    refused = _invoke("sql", "select 1", "--db", str(catalog_path))
    assert refused.exit_code == 1 and "circuits db upgrade --db" in refused.output


def test_db_upgrade_of_a_catalog_made_without_migrations(tmp_path):
    path = tmp_path / "plain.duckdb"
    engine = build_engine(resolve_url(path), read_only=False)
    create_all(engine)
    engine.dispose()
    assert _invoke("sql", "select 1", "--db", str(path)).exit_code == 1
    result = _invoke("db", "upgrade", "--db", str(path))
    assert result.exit_code == 0, result.output
    assert "backed up to" in result.output and f"marked as schema {revision.SCHEMA_HEAD}" in result.output
    assert len(list(tmp_path.glob("plain.duckdb.bak-norev-*"))) == 1
    assert _invoke("sql", "select count(*) from run", "--db", str(path)).exit_code == 0


def test_missing_catalog_names_init(tmp_path):
    result = _invoke("sql", "select 1", "--db", str(tmp_path / "none.duckdb"))
    assert result.exit_code == 1 and "circuits db init" in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def filled_db(db_url):
    """A fresh catalog with the one run of `filled`, on DuckDB and on PostgreSQL."""
    _write_one_run(db_url)
    close_catalogs_of(db_url)
    return db_url


def test_sql_formats(filled_db):
    catalog_path = filled_db
    as_json = _invoke("sql", "select count(*) as n from run", "--db", str(catalog_path), "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == [{"n": 1}]
    query = "select src_channel, dst_channel, score from edges_v order by 1, 2"
    as_csv = _invoke("sql", query, "--db", str(catalog_path), "--format", "csv")
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0] == ["src_channel", "dst_channel", "score"] and len(rows) == 7
    assert [float(r[2]) for r in rows[1:]] == list(range(1, 7))
    table = _invoke("sql", "select name, layer_order from model", "--db", str(catalog_path))
    assert table.exit_code == 0 and '["l0", "l1"]' in table.stdout and "toy" in table.stdout
    wide = _invoke("sql", "select * from circuit_overlap_v, edges_v", "--db", str(catalog_path))
    assert all(name in wide.stdout for name in ("concept_a", "jaccard", "dst_channel"))
    limited = _invoke("sql", query, "--db", str(catalog_path), "-f", "json", "--limit", "2")
    assert len(json.loads(limited.stdout)) == 2 and "--limit 0" in limited.stderr


@pytest.mark.parametrize(
    "statement",
    [
        "delete from run",
        "insert into concept (id, name) values (99, 'x')",
        "update concept set name = 'renamed'",
        "drop table edge",
        "create table t (a integer)",
        "create or replace view edges_v as select 1",
        "alter table run add column x integer",
        "attach '{dir}/other.duckdb' as other",
        "copy run to '{dir}/out.csv'",
        "export database '{dir}/dump'",
        "commit; delete from run",
        "select * from run; delete from edge",
    ],
)
def test_sql_refuses_changes_and_leaves_the_catalog_unchanged(filled, statement):
    catalog_path = filled
    before = _digest(catalog_path)
    result = _invoke("sql", statement.format(dir=catalog_path.parent), "--db", str(catalog_path))
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    close_catalogs_of(catalog_path)
    assert _digest(catalog_path) == before
    assert sorted(p.name for p in catalog_path.parent.iterdir()) == ["catalog.duckdb"]
    with duckdb.connect(str(catalog_path), read_only=True) as con:
        assert con.execute("select count(*) from run").fetchone() == (1,)
        assert con.execute("select count(*) from edge").fetchone() == (6,)


def test_sql_refuses_changes_while_this_process_writes(filled):
    """A read-write catalog open in this process: `sql` shares it through read-only transactions."""
    catalog_path = filled
    writer = open_catalog(catalog_path)
    for statement in ("delete from run", "commit; delete from run", "begin; delete from run"):
        result = _invoke("sql", statement, "--db", str(catalog_path))
        assert result.exit_code == 1 and result.output.startswith("error: ")
    ok = _invoke("sql", "select count(*) as n from edge", "--db", str(catalog_path), "-f", "json")
    assert json.loads(ok.stdout) == [{"n": 6}]
    with writer.session() as s:
        assert len(store.list_runs(s)) == 1


def test_sql_errors_are_the_database_message(catalog_path):
    result = _invoke("sql", "select * from nope", "--db", str(catalog_path))
    assert result.exit_code == 1
    assert result.output.startswith("error: Catalog Error: Table with name nope does not exist")
    assert result.output.count("\n") == 1
    syntax = _invoke("sql", "selec 1", "--db", str(catalog_path))
    assert syntax.exit_code == 1 and "syntax error" in syntax.output


def test_commands_have_help():
    from circuits.cli.db import app as catalog_app
    from circuits.cli.db import db_app

    commands = [c for c in catalog_app.registered_commands + db_app.registered_commands]
    assert {c.name for c in commands} == {"sql", "init", "upgrade", "status", "vacuum"}
    assert all(c.callback.__doc__ for c in commands)
    for args in (["sql", "--help"], ["db", "init", "--help"], ["db", "upgrade", "--help"], ["db", "vacuum", "--help"]):
        result = _invoke(*args)
        assert result.exit_code == 0 and "--db" in result.output


def test_db_commands_leave_catalogs_of_this_process_usable(cat, catalog_path):
    for args in (["db", "status"], ["db", "init"]):
        result = _invoke(*args, "--db", str(catalog_path))
        assert result.exit_code == 0, result.output
    with cat.session() as s, s.begin():
        assert store.ensure_concept(s, "still-open") > 0
