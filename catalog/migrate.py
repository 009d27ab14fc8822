"""Alembic migrations of the catalog schema, shipped as package data, driven from code.

There is no `alembic.ini`: `alembic_config` builds the configuration in code and hands Alembic an
open connection, so the same functions serve `circuits db init|upgrade`, `open_catalog(create=True)`
and the tests. Revision ids are zero-padded numbers (`0001`, `0002`, …) in files named
`NNNN_slug.py`, one linear history, so revisions order as integers and `open_catalog` can check a
database against `SCHEMA_HEAD` without importing Alembic.

Writing a new revision: copy the newest file, bump the number, set `down_revision`, write the
operations by hand (docs/architecture.md, "Conventions": DuckDB cannot add foreign keys or NOT NULL columns to existing
tables, nor drop a column from a table with an index or referenced rows; keys and indexes go
inside `create_table`; name CHECK constraints with `op.f(...)` or the naming convention is applied
twice), bump `SCHEMA_HEAD` (in `catalog.revision`), and run the migration tests.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

if TYPE_CHECKING:  # alembic is imported lazily: `circuits --help` must stay fast
    from alembic.config import Config

from catalog.revision import VERSION_TABLE

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
"""The `migrations` package (Alembic env and versions) shipped beside `catalog` in the distribution.

Found by this file's location, never by import name: a working directory with a `migrations/`
package of its own (Django, Flask-Migrate) comes first on `sys.path` in scripts and notebooks."""


def alembic_config(connection: Connection | None = None, *, version_locations: Sequence[str | Path] = ()) -> Config:
    """Build the Alembic configuration for the catalog's migrations.

    Args:
        connection: the connection Alembic runs on (env.py uses it and its transaction).
        version_locations: extra folders of revisions besides the shipped ones (tests).

    Returns:
        An `alembic.config.Config` pointing at this package.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    locations = [str(MIGRATIONS_DIR / "versions"), *(str(p) for p in version_locations)]
    cfg.set_main_option("path_separator", "os")  # how Alembic splits version_locations
    cfg.set_main_option("version_locations", os.pathsep.join(locations))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script_heads(*, version_locations: Sequence[str | Path] = ()) -> tuple[str, ...]:
    """The head revisions of the migration scripts (one, if the history is linear).

    Args:
        version_locations: extra folders of revisions (tests).

    Returns:
        The head revision ids.
    """
    from alembic.script import ScriptDirectory

    return tuple(ScriptDirectory.from_config(alembic_config(version_locations=version_locations)).get_heads())


def upgrade(connection: Connection, revision: str = "head", *, version_locations: Sequence[str | Path] = ()) -> None:
    """Upgrade the database on `connection` to `revision`, inside the caller's transaction.

    Args:
        connection: a read-write connection; the caller commits (e.g. `with engine.begin()`).
        revision: target revision id, or "head".
        version_locations: extra folders of revisions (tests).
    """
    from alembic import command

    command.upgrade(alembic_config(connection, version_locations=version_locations), revision)


def downgrade(connection: Connection, revision: str = "base", *, version_locations: Sequence[str | Path] = ()) -> None:
    """Downgrade the database on `connection` to `revision` ("base" removes everything).

    Args:
        connection: a read-write connection; the caller commits.
        revision: target revision id, or "base".
        version_locations: extra folders of revisions (tests).
    """
    from alembic import command

    command.downgrade(alembic_config(connection, version_locations=version_locations), revision)


SCHEMA_LOCK_KEY = 0x63697263  # "circ": the PostgreSQL advisory lock taken around schema changes


def lock_schema(connection: Connection) -> None:
    """Serialise schema changes between processes, until the connection's transaction ends.

    On PostgreSQL an advisory transaction lock: a process that creates or upgrades the schema
    while another is doing the same waits, then sees the other's result (re-read the revision
    after calling this). DuckDB needs none: a file has one writing process.

    Args:
        connection: a read-write connection inside the transaction that changes the schema.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_KEY})


def current_revision(connection: Connection) -> str | None:
    """The revision recorded in the database, read with plain SQL (no Alembic import).

    Args:
        connection: any connection, read-only is fine.

    Returns:
        The revision id, or None when the database has no (or an empty) version table.
    """
    # A catalog-function lookup, not SQLAlchemy's inspector or information_schema (30–45 ms on
    # duckdb-engine): every command that opens a catalog pays this check in a fresh process
    # (docs/results.md, "Catalog scale and storage").
    if connection.dialect.name == "postgresql":
        # pg_class read with the statement's snapshot, not `to_regclass`: that goes through the
        # session's catalog cache, which can still miss a table another process created and
        # committed while this transaction waited on the schema lock (simultaneous first opens).
        exists = connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
                " ON n.oid = c.relnamespace WHERE c.relname = :t AND n.nspname = current_schema())"
            ),
            {"t": VERSION_TABLE},
        ).scalar()
    elif connection.dialect.name == "duckdb":
        exists = connection.execute(
            text("SELECT count(*) FROM duckdb_tables() WHERE table_name = :t AND schema_name = current_schema()"),
            {"t": VERSION_TABLE},
        ).scalar()
    else:
        exists = inspect(connection).has_table(VERSION_TABLE)
    if not exists:
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:  # branches are never created here; report the newest
        return max(rows)
    return rows[0] if rows else None


def user_tables(connection: Connection) -> list[str]:
    """Tables in the database other than Alembic's version table.

    Args:
        connection: any connection.

    Returns:
        Sorted table names.
    """
    return sorted(t for t in inspect(connection).get_table_names() if t != VERSION_TABLE)
