"""Read-side SQL helpers: read-only SQL (`circuits sql`), Arrow results, JSON column decoding.

`run_sql` is the fast path of `circuits sql`: on a DuckDB file it opens the file with the plain
`duckdb` module (no SQLAlchemy, pyarrow or Alembic import), with the same safety as
`open_catalog(..., read_only=True)`. `run_query` does the same on an open `Catalog`. `query_arrow`
and `decode_json` are what the query modules use to read small results.

Safety comes from the connection, not from inspecting the query's words: the catalog must be
opened read-only (`open_catalog(..., read_only=True)`), so DuckDB itself refuses INSERT, UPDATE,
DELETE, DROP, CREATE, ATTACH …, and with external access disabled also COPY … TO, EXPORT and file
reads. The only statements refused here are transaction control (BEGIN/COMMIT/ROLLBACK, as
classified by DuckDB's parser), because ending the read-only transaction of a catalog that shares
this process's read-write database would let later statements write.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from catalog.errors import CatalogError, NotFound, QueryError, ReadOnlyViolation
from catalog.sql_limits import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT_S,
    ResultTooLarge,
    check_query_text,
    duckdb_sandbox_config,
    interrupt_after,
    superuser_allowed,
    timeout_error,
)
from catalog.sql_read import QueryResult, first_paragraph, postgres_query, read_capped

if TYPE_CHECKING:  # imported lazily: the fast `circuits sql` path must not load them
    import pyarrow as pa
    from sqlalchemy.orm import Session

    from catalog.engine import Catalog

__all__ = [
    "DEFAULT_MAX_ROWS",
    "QueryResult",
    "decode_json",
    "is_sandboxed",
    "open_sql_catalog",
    "query_arrow",
    "run_query",
    "run_sql",
]

DEFAULT_MAX_ROWS = 10_000
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def run_query(
    cat: Catalog,
    query: str,
    *,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    allow_superuser: bool | None = None,
) -> QueryResult:
    """Run SQL (one or more statements) on a read-only catalog and return the last result.

    DuckDB: the query gets a connection of its own to the catalog's database (no state such as
    temporary tables or macros outlives it); the memory cap and locked configuration are those of
    the catalog, so open it with `open_sql_catalog` (a catalog that shares this process's
    read-write database runs the query in its read-only transaction instead). PostgreSQL: a fresh
    connection per query, closed afterwards (advisory locks and settings end with it).

    Args:
        cat: a catalog opened with `read_only=True` (best: `open_sql_catalog`).
        query: the SQL text.
        max_rows: keep at most this many rows (None: all).
        max_bytes: stop reading, with `ResultTooLarge`, once the rows read pass this size (None:
            no cap).
        timeout_s: stop the query after this many seconds (None: no limit).
        allow_superuser: PostgreSQL: run even as a role that could run programs or read server
            files (None: only when $CIRCUITS_SQL_ALLOW_SUPERUSER is 1).

    Returns:
        The last statement's columns and rows.

    Raises:
        ReadOnlyViolation: a statement would change the catalog or touch files.
        QueryError: the database rejected the SQL (its message, one line); SqlTimeout: too slow;
            ResultTooLarge: the result passed `max_bytes`.
        UnsafeRole: PostgreSQL, connected as a role that could run programs or read server files.
        CatalogError: the catalog was not opened read-only.
    """
    if not cat.read_only:
        raise CatalogError("run_query needs a catalog opened read-only: open_catalog(..., read_only=True)")
    check_query_text(query)
    if cat.backend != "duckdb":
        return postgres_query(cat.url, query, max_rows, max_bytes, timeout_s, superuser_allowed(allow_superuser))
    from catalog.engine import driver_connection

    with cat.session() as session:
        raw = driver_connection(session)
        if not cat.connection_read_only:  # shares a read-write database: stay in its read-only transaction
            return _duckdb_query(raw, query, max_rows, max_bytes, timeout_s)
        own = raw.cursor()  # a new connection to the same (read-only) database: no state carried over
        try:
            return _duckdb_query(own, query, max_rows, max_bytes, timeout_s)
        finally:
            own.close()


def _duckdb_query(
    raw: Any, query: str, max_rows: int | None, max_bytes: int | None, timeout_s: float | None = None
) -> QueryResult:
    with interrupt_after(timeout_s, raw.interrupt) as timed_out:
        try:
            return _duckdb_statements(raw, query, max_rows, max_bytes)
        except QueryError as exc:
            if timed_out() and not isinstance(exc, ResultTooLarge):
                raise timeout_error(timeout_s) from None
            raise


def _duckdb_statements(raw: Any, query: str, max_rows: int | None, max_bytes: int | None) -> QueryResult:
    import duckdb

    try:
        statements = raw.extract_statements(query)
        if not statements:
            raise QueryError("the query is empty")
        if any(st.type == duckdb.StatementType.TRANSACTION for st in statements):
            raise ReadOnlyViolation(
                "transaction control (BEGIN, COMMIT, ROLLBACK) is not allowed: each query runs in "
                "its own read-only transaction"
            )
        for st in statements[:-1]:
            raw.execute(st)
            raw.complete()  # run to its end: the connection takes no new work while a result is open
        raw.execute(statements[-1])
        if raw.description is None:
            return QueryResult((), [])
        columns = tuple(d[0] for d in raw.description)
        # fetched in batches in DuckDB's own Python conversion (no pyarrow: the fast path must not load it)
        return read_capped(raw.fetchmany, columns, max_rows, max_bytes)
    except duckdb.Error as exc:
        raise _duckdb_error(exc) from exc


def _duckdb_error(exc: Exception) -> CatalogError:
    import duckdb

    text = first_paragraph(str(exc))
    if isinstance(exc, duckdb.PermissionException) or any(
        w in text for w in ("read-only", "read only", "configuration has been locked")
    ):
        return ReadOnlyViolation(f"refused, the catalog is read-only here: {text}")
    if isinstance(exc, duckdb.OutOfMemoryException) or text.startswith("Out of Memory"):
        return QueryError(
            f"out of memory: the query needs more than the memory cap and spilling to disk is off "
            f"({text.split(' Possible solutions')[0].split(' Database is launched')[0]}): narrow it, "
            "or raise `memory_limit=`"
        )
    return QueryError(text)


def open_sql_catalog(db: str | os.PathLike[str] | None, *, memory_limit: str | None = None) -> Catalog:
    """Open a catalog read-only for user SQL (serve's SQL box): a DuckDB file gets the sandbox's
    locked configuration (`catalog.sql_limits.duckdb_sandbox_config`) on every connection.

    Raises:
        See `catalog.open_catalog`; QueryError: a DuckDB URL option the sandbox does not allow.
    """
    from catalog.engine import open_catalog, resolve_url

    url = resolve_url(db)
    if url.get_backend_name() == "duckdb" and url.database not in (None, "", ":memory:"):
        _check_url_options(dict(url.query))
        config = duckdb_sandbox_config(memory_limit)
        url = url.update_query_dict({k: _config_text(v) for k, v in config.items()})
    return open_catalog(url, read_only=True)


def is_sandboxed(cat: Catalog) -> bool:
    """Whether a catalog was opened by `open_sql_catalog` (PostgreSQL: always, per query)."""
    return cat.backend != "duckdb" or cat.url.query.get("lock_configuration") == "true"


def _config_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


_URL_OPTIONS_KEPT = ("threads",)  # harmless; every other DuckDB setting is the sandbox's


def _check_url_options(options: Mapping[str, Any]) -> dict[str, Any]:
    other = sorted(set(options) - set(_URL_OPTIONS_KEPT))
    if other:
        raise QueryError(
            f"the `db=` URL sets {', '.join(other)}: user SQL runs with fixed DuckDB settings (read-only, "
            "memory cap, no spill, locked); drop them from the URL (use `memory_limit=` for the cap)"
        )
    return {k: v for k, v in options.items() if k in _URL_OPTIONS_KEPT}


def run_sql(
    db: str | os.PathLike[str] | None,
    query: str,
    *,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    memory_limit: str | None = None,
    allow_superuser: bool | None = None,
) -> QueryResult:
    """Run read-only SQL on a catalog given by path or URL, in the sandbox, as fast as the backend allows.

    A DuckDB file (a path, or a `duckdb:///` URL with or without options) is opened with the plain
    `duckdb` module, read-only, external access disabled and the configuration locked (a
    statement cannot re-enable anything), a memory cap and no spill files
    (`catalog.sql_limits`), after checking its schema revision in `alembic_version`; SQLAlchemy,
    pyarrow and Alembic are not imported. A PostgreSQL URL goes through `run_query` (a fresh
    read-only connection per query). A file this process already has open as a `Catalog` uses
    that catalog (sandboxed when it was opened with `open_sql_catalog`).

    Args:
        db: a DuckDB file path or URL; None means `$CIRCUITS_DB`, else `./circuits.duckdb`.
        query: the SQL text (one or more statements; the last one's rows are returned).
        max_rows: keep at most this many rows (None: all).
        max_bytes: stop with `ResultTooLarge` once the rows read pass this many bytes (None: no cap).
        timeout_s: stop the query after this many seconds (None: no limit).
        memory_limit: DuckDB memory cap, e.g. "2GB" (default: half the memory, at most 4 GiB).
        allow_superuser: see `run_query`.

    Returns:
        The last statement's columns and rows.

    Raises:
        NotFound: no such file, or an empty database.
        CatalogCorrupt: the file is not a DuckDB database or is damaged.
        SqlTimeout: the query ran past `timeout_s`. UnsafeRole: see `run_query`.
        ResultTooLarge: the result passed `max_bytes`.
        SchemaOutdated: the catalog is at another schema revision.
        CatalogLocked: another process writes the file.
        ReadOnlyViolation: a statement would change the catalog or touch files.
        QueryError: the database rejected the SQL, or the URL sets DuckDB options.
    """
    check_query_text(query)
    target = _duckdb_file(db)
    if target is None:
        from catalog.engine import open_catalog

        return run_query(
            open_catalog(db, read_only=True),
            query,
            max_rows=max_rows,
            max_bytes=max_bytes,
            timeout_s=timeout_s,
            allow_superuser=allow_superuser,
        )
    path, options = target
    if _open_in_process(path):
        from catalog.engine import cached_catalog, open_catalog

        cat = cached_catalog(path)
        if cat is None or not is_sandboxed(cat) or not cat.read_only:
            cat = open_catalog(path, read_only=True)
        return run_query(cat, query, max_rows=max_rows, max_bytes=max_bytes, timeout_s=timeout_s)
    import duckdb

    from catalog.db_path import check_duckdb_target, open_error

    check_duckdb_target(path, create=False, read_only=True)
    if not os.path.exists(path):
        raise NotFound(f"no catalog at {path}: create it with `circuits db init --db {path}`")
    config = duckdb_sandbox_config(memory_limit) | options
    try:
        raw = duckdb.connect(path, read_only=True, config=config)
    except duckdb.Error as exc:
        detail = str(exc).splitlines()[0]
        known = open_error(detail, path)
        raise (known or CatalogError(f"cannot open catalog {path}: {detail}")) from exc
    try:
        _check_duckdb_revision(raw, path)
        return _duckdb_query(raw, query, max_rows, max_bytes, timeout_s)
    finally:
        raw.close()


def _duckdb_file(db: str | os.PathLike[str] | None) -> tuple[str, dict[str, Any]] | None:
    """The absolute path of a DuckDB catalog file and its URL options, or None for PostgreSQL
    and in-memory URLs.

    Raises:
        QueryError: the URL sets DuckDB options other than `threads`.
    """
    if db is None:
        from catalog.connect import DEFAULT_PATH, ENV_VAR

        db = os.environ.get(ENV_VAR) or DEFAULT_PATH
    text = os.fspath(db)
    options: dict[str, Any] = {}
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme != "duckdb" or not rest.startswith("/"):
            return None  # PostgreSQL: the general path handles it
        rest, _, query = rest.partition("?")
        from urllib.parse import parse_qsl, unquote

        options = _check_url_options(dict(parse_qsl(query, keep_blank_values=True)))
        text = unquote(rest[1:])
        if text in ("", ":memory:"):
            return None
    return os.path.abspath(os.path.expanduser(text)), options


def _open_in_process(path: str) -> bool:
    """Whether this process has the file open as a Catalog (DuckDB allows one config per file)."""
    import sys

    if "catalog.engine" not in sys.modules:
        return False
    from catalog.engine import cached_catalog

    return cached_catalog(path) is not None


def _check_duckdb_revision(raw: Any, path: str) -> None:
    """`catalog.revision.check_revision` on a plain DuckDB connection."""
    from catalog.revision import VERSION_TABLE, check_revision

    tables = {
        name
        for (name,) in raw.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'"
        ).fetchall()
    }
    revision = None
    if VERSION_TABLE in tables:
        versions = [v for (v,) in raw.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()]
        revision = max(versions) if versions else None
    check_revision(revision, bool(tables - {VERSION_TABLE}), path)


def query_arrow(session: Session, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
    """Run one read query and return its result as an Arrow table.

    On DuckDB the driver exports the result to Arrow directly (no Python objects per row); on
    PostgreSQL the rows come through SQLAlchemy Core (the query modules only fetch small results
    or a run's top edges that way). JSON columns come back as text on DuckDB: `decode_json` them.

    Args:
        session: the caller's session (its transaction is used).
        sql: a SELECT with SQLAlchemy-style ``:name`` parameters; lists are passed whole and used
            as ``= ANY(:name)``. Write casts as ``CAST(x AS T)``, not ``x::T``.
        params: the parameter values; every one must be used in `sql`.

    Returns:
        The result, one column per selected expression.
    """
    import pyarrow as pa

    params = dict(params or {})
    if session.get_bind().dialect.name == "duckdb":
        from catalog.engine import driver_connection

        raw = driver_connection(session)
        return raw.sql(_PARAM.sub(r"$\1", sql), params=params).to_arrow_table()
    from sqlalchemy import text

    result = session.execute(text(sql), params)
    names = list(result.keys())
    rows = result.all()
    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})


def decode_json(value: Any) -> Any:
    """A JSON column's value as Python objects, on either backend.

    DuckDB returns JSON columns as text (through its driver and its Arrow export); PostgreSQL
    returns them decoded. Meant for the catalog's JSON columns, which hold lists and objects (a
    JSON string value would be indistinguishable from its text).
    """
    return json.loads(value) if isinstance(value, str) else value
