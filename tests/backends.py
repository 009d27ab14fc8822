"""Test helpers for running the same tests on DuckDB and PostgreSQL (fixtures in conftest.py).

PostgreSQL tests are marked `pg` and need `CIRCUITS_TEST_PG_URL`, the URL of a database on a
throw-away server (`.ci/postgres.sh` starts one and prints the line to export). Each test gets a
fresh database: `CREATE DATABASE t_<random> TEMPLATE <migrated template>` on that server, dropped
after the test.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

PG_ENV = "CIRCUITS_TEST_PG_URL"
PG_SKIP_REASON = f"needs PostgreSQL: run `eval $(.ci/postgres.sh)` to set {PG_ENV}"

BACKENDS = [pytest.param("duckdb", id="duckdb"), pytest.param("postgresql", id="pg", marks=pytest.mark.pg)]
"""The `backend` parameter of the catalog fixtures: every parametrised test runs on both."""


def pg_server_url() -> URL | None:
    """The test server's URL from the environment (None when unset)."""
    text = os.environ.get(PG_ENV)
    if not text:
        return None
    url = make_url(text)
    return url.set(drivername="postgresql+psycopg") if url.drivername == "postgresql" else url


@contextmanager
def _admin(server: URL) -> Iterator[sa.Connection]:
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def create_database(server: URL, *, template: str | None = None, prefix: str = "t_") -> URL:
    """Create a new, uniquely named database on the server (a copy of `template` if given).

    Returns:
        Its URL (same credentials and host as `server`).
    """
    name = f"{prefix}{secrets.token_hex(6)}"
    with _admin(server) as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    return server.set(database=name)


def drop_database(server: URL, name: str) -> None:
    """Drop a database, ending any connection still open on it."""
    with _admin(server) as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def url_text(url: URL) -> str:
    """The URL as a string with its password (what `open_catalog` and `--db` take)."""
    return url.render_as_string(hide_password=False)


@contextmanager
def read_only_role(database: str) -> Iterator[str]:
    """A login role that may only read the tables of this catalog database (how `circuits sql`
    and `serve` are meant to run on PostgreSQL); yields its URL and drops the role afterwards.

    Args:
        database: the URL of a database at the head schema, as a superuser.
    """
    url = make_url(database)
    role = f"reader_{url.database}"
    with _admin(url) as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(sa.text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        conn.execute(sa.text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
    try:
        yield url_text(url.set(username=role))
    finally:
        with _admin(url) as conn:
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))  # its grants in this database
            conn.execute(sa.text(f'DROP ROLE "{role}"'))
