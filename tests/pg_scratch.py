"""A scratch PostgreSQL database per test, on the server named by `CIRCUITS_TEST_PG_URL` (start one
with `.ci/postgres.sh`); tests that need it skip, with that reason, when the variable is unset."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

ENV = "CIRCUITS_TEST_PG_URL"
SKIP_REASON = f"no PostgreSQL server: start one with `eval $(.ci/postgres.sh)` to set {ENV}"


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new, empty database on the test server; its URL. Dropped afterwards."""
    server = os.environ.get(ENV)
    if not server:
        pytest.skip(SKIP_REASON)
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from catalog.engine import close_catalogs_of

        close_catalogs_of(url)
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
