"""Create, upgrade and inspect a catalog's schema by path or URL (`circuits db init|upgrade|status`).

These work on databases that `open_catalog` refuses (outdated, foreign), so they open their own
short-lived engines (no pooling) and never go through the process-wide catalog cache; any catalog
of the same database open in this process is closed first.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Connection, inspect
from sqlalchemy.engine import URL

from catalog import migrate, revision
from catalog.connect import build_engine, resolve_url
from catalog.connect import connect_errors as _connect_errors
from catalog.connect import display as _display
from catalog.connect import duckdb_path as _duckdb_path
from catalog.db_path import check_duckdb_target
from catalog.engine import cached_catalog, close_catalogs_of, open_catalog
from catalog.errors import CatalogError, NotFound
from catalog.models import Base
from catalog.revision import check_revision
from catalog.views import VIEWS, create_views


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands.

    Attributes:
        display: the file path, or the URL without its password.
        current: the database's revision (None: none recorded).
        head: the revision this version of the code expects.
        state: "up to date", "outdated", "newer", "empty" or "foreign" (tables, no revision).
    """

    display: str
    current: str | None
    head: str
    state: str


@dataclass(frozen=True)
class UpgradeResult:
    """What `upgrade_catalog` did.

    Attributes:
        display: the file path, or the URL without its password.
        before: the revision before (None: none recorded).
        after: the revision now.
        backup: the copy made of the DuckDB file first, if any.
        stamped: True when a foreign database already had exactly this schema and was only marked.
    """

    display: str
    before: str | None
    after: str
    backup: Path | None
    stamped: bool = False


def catalog_status(url_or_path: str | os.PathLike[str] | None = None) -> SchemaStatus:
    """Read a database's schema revision without changing anything.

    Args:
        url_or_path: see `catalog.connect.resolve_url`.

    Returns:
        The status.

    Raises:
        NotFound: the DuckDB file does not exist.
        CatalogLocked: another process holds it.
    """
    url = resolve_url(url_or_path)
    with _probe(url, read_only=True) as conn:
        current = migrate.current_revision(conn)
        tables = migrate.user_tables(conn)
    head = revision.SCHEMA_HEAD
    return SchemaStatus(_display(url), current, head, _state(current, tables, head))


def init_catalog(url_or_path: str | os.PathLike[str] | None = None) -> SchemaStatus:
    """Create a catalog (a new DuckDB file, or an empty database) at the head revision.

    Args:
        url_or_path: see `catalog.connect.resolve_url`.

    Returns:
        The status before: state "empty" when it was created, "up to date" when it existed.

    Raises:
        SchemaOutdated: the database holds an outdated or foreign schema (use upgrade).
        CatalogLocked: another process holds it.
    """
    url = resolve_url(url_or_path)
    path = _duckdb_path(url)
    if path is not None and not path.exists():
        before = SchemaStatus(str(path), None, revision.SCHEMA_HEAD, "empty")
    else:
        before = catalog_status(url_or_path)
    if before.state not in ("empty", "up to date"):
        check_revision(before.current, True, _display(url))  # raises: outdated, newer or foreign
    target = url.render_as_string(hide_password=False)
    already_open = cached_catalog(target)
    cat = open_catalog(target, create=True)
    if cat is not already_open:  # leave a catalog this process was using open
        cat.close()
    return before


def upgrade_catalog(url_or_path: str | os.PathLike[str] | None = None, *, backup: bool = True) -> UpgradeResult:
    """Upgrade a catalog to the head revision, backing a DuckDB file up first.

    A foreign database (tables but no revision) is accepted only if its tables and columns are
    exactly this version's (e.g. made by `catalog.views.create_all`): it is then marked as head.

    Args:
        url_or_path: see `catalog.connect.resolve_url`.
        backup: copy a DuckDB file to `<file>.bak-<revision>-<time>` before changing it.

    Returns:
        What was done.

    Raises:
        NotFound: no file (use `circuits db init`).
        SchemaOutdated: the database is newer than this version.
        CatalogError: a foreign database whose tables are not the catalog's.
        CatalogLocked: another process holds it.
    """
    url = resolve_url(url_or_path)
    close_catalogs_of(url_or_path)  # the file may be copied and changed below
    status = catalog_status(url_or_path)
    display = status.display
    if status.state == "up to date":
        return UpgradeResult(display, status.current, status.head, None)
    if status.state == "newer":
        check_revision(status.current, True, _display(url))  # raises "newer than this version knows"
    saved = _backup(url, status.current) if backup and status.state != "empty" else None
    with _probe(url, read_only=False) as conn, conn.begin():
        if status.state == "foreign":
            _require_catalog_tables(conn, display)
            views = set(inspect(conn).get_view_names())
            create_views(conn, {n: sql for n, sql in VIEWS.items() if n not in views})
            _stamp(conn)
        else:
            migrate.lock_schema(conn)  # another process may be upgrading it right now
            if migrate.current_revision(conn) != revision.SCHEMA_HEAD:
                migrate.upgrade(conn)
    stamped = status.state == "foreign"
    return UpgradeResult(display, status.current, revision.SCHEMA_HEAD, saved, stamped)


def _state(current: str | None, tables: list[str], head: str) -> str:
    if current == head:
        return "up to date"
    if current is None:
        return "foreign" if tables else "empty"
    number, head_number = revision.revision_number(current), revision.revision_number(head)
    if number is not None and head_number is not None and number < head_number:
        return "outdated"
    return "newer"


@contextmanager
def _probe(url: URL, *, read_only: bool) -> Iterator[Connection]:
    """A connection on a short-lived engine without a pool, disposed on exit.

    A read-only probe of a database this process already has open goes through that catalog's
    engine instead (DuckDB allows one configuration per file per process).
    """
    path = _duckdb_path(url)
    if path is not None:
        check_duckdb_target(path, create=False, read_only=read_only)  # a folder, not DuckDB, unwritable
    if path is not None and not path.exists():
        raise NotFound(f"no catalog at {path}: create it with `circuits db init --db {path}`")
    cat = cached_catalog(url.render_as_string(hide_password=False)) if read_only else None
    if cat is not None:
        with cat.engine.connect() as conn:
            yield conn
        return
    engine = build_engine(url, read_only=read_only, poolclass=sa.pool.NullPool)
    try:
        with _connect_errors(url), engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _backup(url: URL, revision: str | None) -> Path | None:
    """Copy a DuckDB file (no connection is open on it now) next to itself."""
    path = _duckdb_path(url)
    if path is None:
        return None
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.bak-{revision or 'norev'}-{stamp}")
    shutil.copy2(path, target)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        shutil.copy2(wal, target.with_name(target.name + ".wal"))
    return target


def _require_catalog_tables(conn: Connection, display: str) -> None:
    """Raise unless every table of the models exists with exactly the models' columns."""
    insp = inspect(conn)
    have = set(migrate.user_tables(conn))
    want = set(Base.metadata.tables)
    if have != want:
        extra, missing = sorted(have - want), sorted(want - have)
        raise CatalogError(
            f"{display} is not a circuits catalog (tables without a schema revision; "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}): use another file, or "
            "`circuits db init` a new one"
        )
    for name, table in Base.metadata.tables.items():
        columns = {c["name"] for c in insp.get_columns(name)}
        if columns != set(table.columns.keys()):
            raise CatalogError(
                f"{display} is not a circuits catalog: table {name} has columns {sorted(columns)}; "
                "use another file, or `circuits db init` a new one"
            )


def _stamp(conn: Connection) -> None:
    from alembic import command

    command.stamp(migrate.alembic_config(conn), "head")
