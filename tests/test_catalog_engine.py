"""open_catalog: URLs, caching, read-only connections, locks held by other processes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa

from catalog.connect import DEFAULT_PATH, ENV_VAR, build_engine, resolve_url
from catalog.engine import driver_connection, open_catalog
from catalog.errors import CatalogError, CatalogLocked, NotFound


def test_resolve_url_paths_and_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_url(None).database == str(tmp_path / DEFAULT_PATH)
    assert resolve_url("rel/c.duckdb").render_as_string() == f"duckdb:///{tmp_path}/rel/c.duckdb"
    assert resolve_url("duckdb:///rel.duckdb").database == str(tmp_path / "rel.duckdb")
    assert resolve_url("duckdb:///:memory:").database == ":memory:"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.duckdb"))
    assert resolve_url(None).database == str(tmp_path / "env.duckdb")
    pg = resolve_url("postgresql://me:secret@db.example/circuits")
    assert pg.drivername == "postgresql+psycopg" and pg.database == "circuits"
    with pytest.raises(CatalogError, match="unsupported database"):
        resolve_url("mysql://x/y")


def test_postgresql_url_reaches_the_same_models_without_a_server():
    url = resolve_url("postgresql+psycopg://me:secret@db.example:5432/circuits")
    from catalog.models import Base

    for read_only in (True, False):
        engine = build_engine(url, read_only=read_only)
        assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        for table in Base.metadata.sorted_tables:  # every table compiles for this dialect
            assert f"CREATE TABLE {table.name}" in str(sa.schema.CreateTable(table).compile(engine))
        seen = {}

        def fake_connect(*cargs, **cparams):
            seen.update(cparams)  # noqa: B023 (called within this test)
            raise _NoServer

        engine.dialect.connect = fake_connect  # see what a connection would be opened with
        with pytest.raises(_NoServer):
            engine.connect()
        assert seen["host"] == "db.example" and seen["dbname"] == "circuits"
        expected = "-c statement_timeout=600000" + (" -c default_transaction_read_only=on" if read_only else "")
        assert seen.get("options") == expected
        assert seen["connect_timeout"] == 10  # an unresponsive server fails in bounded time


class _NoServer(Exception):
    pass


def test_missing_file_names_db_init(tmp_path):
    path = tmp_path / "none.duckdb"
    for read_only in (True, False):
        with pytest.raises(NotFound, match=f"circuits db init --db {path}"):
            open_catalog(path, read_only=read_only)
    assert not path.exists()


def test_create_migrates_a_new_file_and_catalogs_are_cached(tmp_path):
    path = tmp_path / "new.duckdb"
    cat = open_catalog(path, create=True)
    assert open_catalog(str(path)) is cat
    assert open_catalog(f"duckdb:///{path}") is cat
    with cat.session() as s:
        assert s.execute(sa.text("SELECT count(*) FROM circuit_overlap_v")).scalar() == 0
    cat.close()
    with pytest.raises(CatalogError, match="closed"):
        cat.session()
    again = open_catalog(path)
    assert again is not cat
    again.close()


def test_read_only_catalog_refuses_writes_in_the_database(catalog_path):
    cat = open_catalog(catalog_path, read_only=True)
    assert cat.connection_read_only
    with cat.session() as s:
        with pytest.raises(sa.exc.DBAPIError, match="read-only"):
            s.execute(sa.text("INSERT INTO concept (id, name) VALUES (1, 'x')"))
    with cat.session() as s:
        assert s.execute(sa.text("SELECT count(*) FROM concept")).scalar() == 0


def test_read_only_shares_a_file_open_for_writing_in_this_process(catalog_path):
    ro_first = open_catalog(catalog_path, read_only=True)
    rw = open_catalog(catalog_path)  # re-points the read-only catalog at the read-write database
    ro = open_catalog(catalog_path, read_only=True)
    assert ro is ro_first and not ro.connection_read_only
    with rw.session() as s, s.begin():
        s.execute(sa.text("INSERT INTO concept (id, name) VALUES (nextval('concept_id_seq'), 'cat')"))
    with ro.session() as s:
        assert s.execute(sa.text("SELECT name FROM concept")).scalars().all() == ["cat"]
        with pytest.raises(sa.exc.DBAPIError, match="read-only mode"):
            s.execute(sa.text("DELETE FROM concept"))
    with rw.session() as s:
        assert s.execute(sa.text("SELECT count(*) FROM concept")).scalar() == 1


def test_in_memory_catalog():
    cat = open_catalog("duckdb:///:memory:", create=True)
    with cat.session() as s:
        assert s.execute(sa.text("SELECT count(*) FROM run")).scalar() == 0
    cat.close()
    with pytest.raises(CatalogError, match="in-memory"):
        open_catalog("duckdb:///:memory:", read_only=True)


def test_driver_connection_is_inside_the_session_transaction(cat):
    with cat.session() as s:
        with s.begin():
            raw = driver_connection(s)
            raw.execute("INSERT INTO concept (id, name) VALUES (nextval('concept_id_seq'), 'a')")
            assert s.execute(sa.text("SELECT count(*) FROM concept")).scalar() == 1
            s.rollback()
    with cat.session() as s:
        assert s.execute(sa.text("SELECT count(*) FROM concept")).scalar() == 0


def test_file_locked_by_another_process(catalog_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(60)",
            str(catalog_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        for read_only in (False, True):
            with pytest.raises(CatalogLocked, match="in use by another process") as err:
                open_catalog(catalog_path, read_only=read_only)
            assert f"PID {holder.pid}" in str(err.value) and "\n" not in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    open_catalog(catalog_path, read_only=True).close()  # free again
