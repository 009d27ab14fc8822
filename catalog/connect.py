"""How a catalog path or URL becomes connections: URL resolution, engine configuration, errors.

Every DuckDB connection has external access disabled (no COPY … TO a file, ATTACH of files, reads
of arbitrary files, extension loading); read-only catalogs are read-only in the database (DuckDB
`read_only=True`, PostgreSQL `default_transaction_read_only`). `catalog.engine` builds on this
(one cached `Catalog` per database and mode); its names are re-exported there.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from catalog.db_path import open_error
from catalog.errors import CatalogError, CatalogLocked

__all__ = [
    "CONNECT_TIMEOUT_ENV",
    "DEFAULT_PATH",
    "DUCKDB_BLOCK_SIZE",
    "DUCKDB_CONFIG",
    "ENV_VAR",
    "LOCK_WAIT_ENV",
    "STATEMENT_TIMEOUT_ENV",
    "build_engine",
    "connect_errors",
    "display",
    "duckdb_path",
    "lock_wait_seconds",
    "pg_conninfo",
    "resolve_url",
    "retry_while_locked",
    "url_key",
]

ENV_VAR = "CIRCUITS_DB"
DEFAULT_PATH = "circuits.duckdb"

DUCKDB_CONFIG = {"enable_external_access": False}
"""Config of every DuckDB connection; one-way (a connection cannot re-enable external access)."""
DUCKDB_BLOCK_SIZE = 65_536
"""Block size of a DuckDB catalog file created here (DuckDB's default is 256 kB). A run's score
words are an uncompressed BIGINT column whose every row group ends in a partly filled block: 5.6 %
of the words' size in 256 kB blocks, 1 % in 64 kB ones (~0.4 MB a googlenet run; see
docs/results.md, "Catalog at 10,000 runs: large tables and storage per run"). Files keep the size
they were made with; `circuits db vacuum` rewrites a file with this one."""

CONNECT_TIMEOUT_ENV = "CIRCUITS_PG_CONNECT_TIMEOUT"
"""Seconds a PostgreSQL connection attempt may take (default 10; libpq's minimum is 2). A
`connect_timeout` in the URL's query wins."""
STATEMENT_TIMEOUT_ENV = "CIRCUITS_PG_STATEMENT_TIMEOUT"
"""Seconds one PostgreSQL statement may run before the server cancels it (default 600, enough
for the COPY of a large run; 0: no limit). A `statement_timeout` in the URL's `options` wins."""
LOCK_WAIT_ENV = "CIRCUITS_LOCK_WAIT"
"""Seconds a writer waits for a DuckDB file another process holds (default 60)."""
_DEFAULTS = {CONNECT_TIMEOUT_ENV: 10.0, STATEMENT_TIMEOUT_ENV: 600.0, LOCK_WAIT_ENV: 60.0}


def _seconds(env: str) -> float:
    text = os.environ.get(env)
    if text is None or not text.strip():
        return _DEFAULTS[env]
    try:
        value = float(text)
    except ValueError:
        raise CatalogError(f"{env}={text!r} is not a number of seconds: set it to e.g. 30") from None
    if value < 0:
        raise CatalogError(f"{env}={text!r} is negative: set it to 0 or more seconds")
    return value


def lock_wait_seconds() -> float:
    """How long writers wait for a DuckDB file held by another process (`$CIRCUITS_LOCK_WAIT`)."""
    return _seconds(LOCK_WAIT_ENV)


def resolve_url(url_or_path: str | os.PathLike[str] | URL | None = None) -> URL:
    """Turn a path or URL into a SQLAlchemy URL.

    Args:
        url_or_path: a DuckDB file path, or a URL (`duckdb:///path`, `duckdb:///:memory:`,
            `postgresql+psycopg://user@host/db`; text or a SQLAlchemy `URL`); None means `$CIRCUITS_DB`, else
            `./circuits.duckdb`.

    Returns:
        The URL; DuckDB paths are made absolute, `postgresql://` gets the psycopg driver.

    Raises:
        CatalogError: not a URL of a supported database.
    """
    if url_or_path is None:
        url_or_path = os.environ.get(ENV_VAR) or DEFAULT_PATH
    if isinstance(url_or_path, URL):  # already parsed (keeps options whose value is empty, e.g. temp_directory=)
        url = url_or_path
    else:
        text = os.fspath(url_or_path)
        if "://" not in text:
            return URL.create("duckdb", database=str(Path(text).expanduser().resolve()))
        try:
            url = make_url(text)
        except sa.exc.ArgumentError as exc:
            raise CatalogError(f"{text!r} is not a database URL: give a file path or e.g. duckdb:///path") from exc
    backend = url.get_backend_name()
    if backend == "duckdb":
        if url.database and url.database != ":memory:":
            url = url.set(database=str(Path(url.database).expanduser().resolve()))
        return url
    if backend == "postgresql":
        return url.set(drivername="postgresql+psycopg") if url.drivername == "postgresql" else url
    raise CatalogError(f"unsupported database {backend!r} in {url.render_as_string()}: use DuckDB or PostgreSQL")


def build_engine(url: URL, *, read_only: bool, read_only_transactions: bool = False, **engine_kwargs: Any) -> Engine:
    """Create (without connecting) the engine for a catalog URL.

    Args:
        url: a resolved URL (`resolve_url`).
        read_only: open connections read-only (DuckDB `read_only`, PostgreSQL
            `default_transaction_read_only`).
        read_only_transactions: DuckDB only: read-write connections whose every transaction is
            `BEGIN TRANSACTION READ ONLY` (to share a file this process has open read-write).
        **engine_kwargs: passed to `sqlalchemy.create_engine` (e.g. `poolclass`).

    Returns:
        The engine.
    """
    if url.get_backend_name() == "duckdb":
        engine = sa.create_engine(url, creator=_duckdb_creator(url, read_only), **engine_kwargs)
        if read_only_transactions:
            # Per-engine: every engine has its own dialect instance. DuckDB has no
            # SET TRANSACTION READ ONLY; the mode is only given at BEGIN.
            engine.dialect.do_begin = _begin_read_only  # type: ignore[method-assign]
        return engine
    return sa.create_engine(url, connect_args=_pg_connect_args(url, read_only), pool_pre_ping=True, **engine_kwargs)


def pg_conninfo(url: URL, *, read_only: bool) -> tuple[str, dict[str, Any]]:
    """A libpq connection string and `psycopg.connect` keywords for a PostgreSQL catalog URL,
    with the same timeouts and read-only mode as the catalog's engine (for a connection of its own)."""
    kwargs = _pg_connect_args(url, read_only)
    plain = url.set(drivername="postgresql", query={k: v for k, v in url.query.items() if k not in kwargs})
    return plain.render_as_string(hide_password=False), kwargs


def _pg_connect_args(url: URL, read_only: bool) -> dict[str, Any]:
    """Timeouts on every PostgreSQL connection (an unresponsive server fails in bounded time),
    and read-only transactions for read-only catalogs. Settings in the URL win."""
    args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        args["connect_timeout"] = max(2, round(_seconds(CONNECT_TIMEOUT_ENV)))
    options = [str(url.query["options"])] if "options" in url.query else []
    if "statement_timeout" not in " ".join(options):
        options.append(f"-c statement_timeout={round(_seconds(STATEMENT_TIMEOUT_ENV) * 1000)}")
    if read_only:
        options.append("-c default_transaction_read_only=on")
    args["options"] = " ".join(options)
    return args


def _duckdb_creator(url: URL, read_only: bool) -> Callable[[], Any]:
    """Connections made here, not by duckdb-engine's `connect`: that one first opens a throw-away
    in-memory DuckDB to list its settings (~0.1 s of every fresh process; docs/results.md,
    "Catalog scale and storage"). Only DUCKDB_CONFIG's settings are given, all of them DuckDB's."""
    database = url.database or ":memory:"

    def connect() -> Any:
        import duckdb
        from duckdb_engine import ConnectionWrapper

        kwargs: dict[str, Any] = {"read_only": True} if read_only else {}
        if not read_only and database != ":memory:" and not os.path.exists(database):
            # Made by a connection of its own, closed at once: DuckDB refuses a second connection
            # to an open file whose config differs, and the block size only matters at creation.
            config: dict[str, Any] = {**DUCKDB_CONFIG, "default_block_size": str(DUCKDB_BLOCK_SIZE)}
            duckdb.connect(database, config=config).close()
        return ConnectionWrapper(duckdb.connect(database, config=dict(DUCKDB_CONFIG), **kwargs))

    return connect


def _begin_read_only(dbapi_connection: Any) -> None:
    dbapi_connection.execute("BEGIN TRANSACTION READ ONLY")


@contextmanager
def connect_errors(url: URL) -> Iterator[None]:
    """Turn a DuckDB lock conflict or an unreachable server into a one-line CatalogError."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        detail = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
        where = display(url)
        if url.get_backend_name() == "duckdb" and (known := open_error(detail, where)) is not None:
            raise known from exc  # lock, corruption or permissions (catalog.db_path)
        if url.get_backend_name() == "duckdb" and "different configuration" in detail:
            raise CatalogLocked(
                f"catalog {where} is open in this process in another mode with a session in use: close it first"
            ) from exc
        if url.get_backend_name() == "postgresql" and isinstance(exc, sa.exc.OperationalError):
            raise CatalogError(f"cannot connect to {where}: {detail}") from exc
        raise


def retry_while_locked(attempt: Callable[[], Any], url: URL, wait: float | None = None) -> Any:
    """Call `attempt` until it stops raising CatalogLocked (DuckDB's one-writer rule) or `wait`
    seconds have passed, saying once on stderr that it waits.

    Args:
        attempt: opens what it needs and returns it; raises CatalogLocked when the file is held.
        url: the catalog (for messages).
        wait: seconds to keep trying (None: `lock_wait_seconds()`; 0: try once).

    Returns:
        What `attempt` returned.

    Raises:
        CatalogLocked: still held after `wait` seconds.
    """
    wait = lock_wait_seconds() if wait is None else wait
    deadline = time.monotonic() + wait
    delay, told = 0.05, False
    while True:
        try:
            return attempt()
        except CatalogLocked as exc:
            if time.monotonic() + delay > deadline:
                if not told:
                    raise
                raise CatalogLocked(
                    f"catalog {display(url)} was still locked by another process after {wait:.0f} s: "
                    f"try again when it is done, or wait longer with {LOCK_WAIT_ENV}=SECONDS"
                ) from exc
            if not told:
                print(
                    f"catalog {display(url)} is locked by another process; waiting… (up to {wait:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def duckdb_path(url: URL) -> Path | None:
    if url.get_backend_name() != "duckdb" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def url_key(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def display(url: URL) -> str:
    path = duckdb_path(url)
    return str(path) if path is not None else url.render_as_string(hide_password=True)
