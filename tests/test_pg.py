"""PostgreSQL for real: timeouts, race-safe creation, migrations, `db` and `sql` commands on a
server (the catalog/store/bulk/query tests run on it too, through the `backend` fixtures)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import backends
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from catalog import migrate, revision
from catalog.admin import catalog_status, init_catalog, upgrade_catalog
from catalog.connect import build_engine, resolve_url
from catalog.engine import close_catalogs_of, open_catalog
from catalog.errors import CatalogError, ReadOnlyViolation
from catalog.models import Base
from catalog.sql import run_query
from catalog.views import VIEWS, create_all
from circuits.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers (a hung server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_unresponsive_server_fails_in_bounded_time_with_one_line(silent_server, monkeypatch):
    monkeypatch.setenv("CIRCUITS_PG_CONNECT_TIMEOUT", "2")
    url = f"postgresql+psycopg://me@127.0.0.1:{silent_server}/circuits"
    # The server never answers: only the connect timeout can end the wait, and the message says so.
    with pytest.raises(CatalogError, match="cannot connect to") as err:
        open_catalog(url)
    assert "\n" not in str(err.value) and "timeout" in str(err.value)
    result = runner.invoke(app, ["list", "runs", "--db", url])
    assert result.exit_code == 1 and result.output.startswith("error: cannot connect to")
    assert result.output.count("\n") == 1


@pytest.mark.pg
def test_statement_timeout_applies_to_every_connection(pg_url, monkeypatch):
    monkeypatch.setenv("CIRCUITS_PG_STATEMENT_TIMEOUT", "0.5")
    engine = build_engine(resolve_url(pg_url), read_only=False, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "500ms"
        with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
            conn.execute(sa.text("SELECT pg_sleep(5)"))
    engine.dispose()
    in_url = build_engine(
        resolve_url(pg_url + "?options=-c%20statement_timeout%3D1234"), read_only=True, poolclass=sa.pool.NullPool
    )
    with in_url.connect() as conn:  # the URL's own setting wins; read-only still applies
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "1234ms"
        assert conn.execute(sa.text("SHOW default_transaction_read_only")).scalar() == "on"
    in_url.dispose()


def _describe(engine: sa.Engine) -> dict[str, list[tuple]]:
    """What PostgreSQL's catalog says about the public schema, except Alembic's table."""
    queries = {
        "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'alembic_version'",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> 'alembic_version'",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
        "AND tablename <> 'alembic_version'",
        "sequences": "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = 'public'",
        "views": "SELECT table_name FROM information_schema.views WHERE table_schema = 'public'",
    }
    with engine.connect() as conn:
        return {k: sorted(tuple(r) for r in conn.execute(sa.text(q))) for k, q in queries.items()}


@pytest.mark.pg
def test_upgrade_equals_create_all_and_downgrade_removes_everything_on_postgresql(pg_server):
    urls = [backends.create_database(pg_server) for _ in range(2)]
    engines = [build_engine(u, read_only=False, poolclass=sa.pool.NullPool) for u in urls]
    try:
        migrated, created = engines
        with migrated.begin() as conn:
            migrate.upgrade(conn)
        create_all(created)
        a = _describe(migrated)
        assert a == _describe(created)
        assert {v for (v,) in a["views"]} == set(VIEWS)
        assert {t for t, *_ in a["columns"]} >= set(Base.metadata.tables)
        with migrated.begin() as conn:
            migrate.downgrade(conn, "base")
        after = _describe(migrated)
        assert after["columns"] == after["views"] == after["sequences"] == after["indexes"] == []
        with migrated.begin() as conn:
            migrate.upgrade(conn)
        assert _describe(migrated) == a
    finally:
        for engine, url in zip(engines, urls):
            engine.dispose()
            backends.drop_database(pg_server, url.database)


_OPEN = (
    "import sys, time; from catalog.engine import open_catalog; "
    "t = float(sys.argv[2]); time.sleep(max(0.0, t - time.time())); "
    "cat = open_catalog(sys.argv[1], create=True); print('ok', flush=True)"
)


@pytest.mark.pg
def test_simultaneous_first_opens_create_the_schema_once(empty_pg_url):
    """Four processes auto-creating one uninitialised database at the same instant all succeed."""
    start = time.time() + 2.0  # all imports done by then: the opens race
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN, empty_pg_url, str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    status = catalog_status(empty_pg_url)
    assert (status.current, status.state) == (revision.SCHEMA_HEAD, "up to date")
    engine = build_engine(resolve_url(empty_pg_url), read_only=True, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


@pytest.mark.pg
def test_db_init_status_upgrade_on_postgresql(empty_pg_url):
    assert catalog_status(empty_pg_url).state == "empty"
    result = runner.invoke(app, ["db", "init", "--db", empty_pg_url])
    assert result.exit_code == 0 and "created catalog postgresql+psycopg://" in result.output
    assert "already exists at schema" in runner.invoke(app, ["db", "init", "--db", empty_pg_url]).output
    status = runner.invoke(app, ["db", "status", "--db", empty_pg_url])
    assert status.exit_code == 0 and "state:    up to date" in status.output
    assert upgrade_catalog(empty_pg_url).backup is None
    assert init_catalog(empty_pg_url).state == "up to date"


@pytest.mark.pg
@pytest.mark.parametrize(
    "statement",
    [
        "delete from run",
        "insert into concept (id, name) values (99, 'x')",
        "update concept set name = 'renamed'",
        "drop table edge",
        "create table t (a integer)",
        "commit; delete from run",
        "select 1; delete from edge",
        "set default_transaction_read_only = off; delete from run",
    ],
)
def test_sql_refuses_changes_on_postgresql(pg_url, statement):
    with open_catalog(pg_url).writing() as s:
        s.execute(sa.text("INSERT INTO concept (id, name) VALUES (nextval('concept_id_seq'), 'kept')"))
    ro = open_catalog(pg_url, read_only=True)
    with pytest.raises((ReadOnlyViolation, CatalogError)):
        run_query(ro, statement)
    close_catalogs_of(pg_url)
    result = runner.invoke(app, ["sql", "select name from concept", "--db", pg_url, "-f", "json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == [{"name": "kept"}]
    assert runner.invoke(app, ["sql", statement, "--db", pg_url]).exit_code == 1
