"""Open the catalog: one engine per database per process, schema checks, read-only mode.

The split with `catalog.connect`: that module is everything about a database URL (resolving a
path or URL, naming it in messages, building an Engine for it, turning connection errors into
`CatalogError`s); this one holds the open catalogs (`Catalog`, `open_catalog`) and uses it. Import
URL functions from `catalog.connect`, catalogs from here.

`open_catalog` turns a path or SQLAlchemy URL into a cached `Catalog` (an Engine plus a
sessionmaker). Callers open sessions and own the transaction (docs/architecture.md, "Conventions"):

    cat = open_catalog("circuits.duckdb")
    with cat.session() as s, s.begin():
        ...

Read-only catalogs are read-only in the database, not by convention: DuckDB files are opened with
`read_only=True`, PostgreSQL sessions with `default_transaction_read_only`. Every DuckDB connection
also has external access disabled (no COPY … TO a file, ATTACH of files, reads of arbitrary files,
extension loading): the catalog never needs it and `circuits sql` must not write anywhere.

A DuckDB file admits one writing process, or several reading ones. Writers hold it only to write:
`Catalog.writing()` opens a short transaction (waiting, with a message on stderr, while another
process holds the file) and lets the file go afterwards, `Catalog.reading()` does the same for a
few reads between computations, and `Catalog.release()` lets the file go before a long
computation, so readers in other processes are not locked out meanwhile.

DuckDB allows one configuration per file per process, so when a file is already open read-write
in this process, a read-only catalog of it shares the read-write database and makes each of its
transactions `BEGIN TRANSACTION READ ONLY` instead (`Catalog.connection_read_only` is then False).
Opening a file read-write after it was opened read-only re-points the read-only catalog that way.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session, sessionmaker

from catalog import migrate
from catalog import revision as _revision
from catalog.connect import (
    build_engine,
    connect_errors,
    display,
    duckdb_path,
    resolve_url,
    retry_while_locked,
    url_key,
)
from catalog.db_path import check_duckdb_target
from catalog.errors import CatalogError, CatalogLocked, NotFound
from catalog.revision import check_revision

_LOCK = threading.RLock()
_REGISTRY: dict[tuple[str, bool], Catalog] = {}


class Catalog:
    """One catalog database: an Engine and a sessionmaker. Get it from `open_catalog`.

    Attributes:
        url: the SQLAlchemy URL (DuckDB paths are absolute).
        read_only: whether this catalog refuses writes.
    """

    def __init__(self, url: URL, engine: Engine, *, read_only: bool, connection_read_only: bool):
        self.url = url
        self.read_only = read_only
        self._engine = engine
        self._connection_read_only = connection_read_only
        self._sessionmaker = sessionmaker(bind=engine)
        self.closed = False

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for Core statements and migrations)."""
        self._check_open()
        return self._engine

    @property
    def backend(self) -> str:
        """ "duckdb" or "postgresql"."""
        return self.url.get_backend_name()

    @property
    def path(self) -> Path | None:
        """The DuckDB file, or None (PostgreSQL, in-memory DuckDB)."""
        return duckdb_path(self.url)

    @property
    def display(self) -> str:
        """How to name this catalog in messages: the file path, or the URL without password."""
        return display(self.url)

    @property
    def connection_read_only(self) -> bool:
        """True when the database connection itself is read-only (not only its transactions)."""
        return self._connection_read_only

    def session(self) -> Session:
        """A new Session; the caller begins and ends its transaction.

        Raises:
            CatalogError: the catalog was closed.
        """
        self._check_open()
        return self._sessionmaker()

    @contextmanager
    def writing(self, *, wait: float | None = None) -> Iterator[Session]:
        """A session in one transaction, committed on success and rolled back on error.

        A DuckDB file held by another process is waited for (a line on stderr says so) for up to
        `wait` seconds, and let go again afterwards (see `release`), so the file is held only while
        writing. Use it for writes that follow a long computation:

            with cat.writing() as s:
                store.write_run(s, ...)

        Args:
            wait: seconds to wait for the file (None: `$CIRCUITS_LOCK_WAIT`, default 60).

        Raises:
            CatalogLocked: the file was still held after `wait` seconds.
            CatalogError: the catalog is read-only or closed.
        """
        if self.read_only:
            raise CatalogError(f"catalog {self.display} is open read-only: open it without read_only to write")
        session = retry_while_locked(self._connected_session, self.url, wait)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
            self.release()

    @contextmanager
    def reading(self, *, wait: float | None = None) -> Iterator[Session]:
        """A session for a few reads between long computations: a DuckDB file held by another
        process is waited for, as `writing` waits, and let go afterwards (`release`). Its
        transaction is rolled back at the end (it only reads).

        Args:
            wait: seconds to wait for the file (None: `$CIRCUITS_LOCK_WAIT`, default 60).

        Raises:
            CatalogLocked: the file was still held after `wait` seconds.
            CatalogError: the catalog is closed.
        """
        session = retry_while_locked(self._connected_session, self.url, wait)
        try:
            yield session
        finally:
            session.close()
            self.release()

    def _connected_session(self) -> Session:
        """A session already connected, so a DuckDB lock conflict is a CatalogLocked here."""
        session = self.session()
        try:
            with connect_errors(self.url):
                session.connection()  # connects (the lock is taken here) and begins
        except BaseException:
            session.close()
            raise
        return session

    def release(self) -> None:
        """Let go of a DuckDB file this catalog holds but is not using (idle pooled connections),
        so other processes can open it; the next session reconnects. Nothing for PostgreSQL or an
        in-memory database (whose data lives in its connection)."""
        if self.path is not None and not self.closed:
            self._engine.dispose()

    def close(self) -> None:
        """Dispose of the engine (closing idle connections) and forget this catalog."""
        with _LOCK:
            if self.closed:
                return
            self._engine.dispose()
            self.closed = True
            for key, cat in list(_REGISTRY.items()):
                if cat is self:
                    del _REGISTRY[key]

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"Catalog({self.display!r}, {mode}{', closed' if self.closed else ''})"

    def _check_open(self) -> None:
        if self.closed:
            raise CatalogError(f"catalog {self.display} was closed: open it again with open_catalog")

    def _rebind(self, engine: Engine, *, connection_read_only: bool) -> None:
        self._engine.dispose()
        self._engine = engine
        self._connection_read_only = connection_read_only
        self._sessionmaker.configure(bind=engine)


def open_catalog(
    url_or_path: str | os.PathLike[str] | URL | None = None,
    *,
    read_only: bool = False,
    create: bool = False,
    wait: float | None = 0,
) -> Catalog:
    """Open (or return the already open) catalog, checking its schema revision.

    Args:
        url_or_path: see `resolve_url`.
        read_only: refuse every write, in the database itself.
        create: create a missing DuckDB file, and migrate an empty database to the head revision
            (on PostgreSQL under an advisory lock, so simultaneous first opens create it once).
        wait: seconds to wait for a DuckDB file another process holds (0: fail at once; None:
            `$CIRCUITS_LOCK_WAIT`, default 60).

    Returns:
        The process-wide `Catalog` for this database and mode.

    Raises:
        NotFound: the file does not exist (or the database is empty) and create is False.
        CatalogLocked: another process holds the DuckDB file (for longer than `wait`).
        SchemaOutdated: the database is at another revision, or has tables but no revision.
        CatalogError: bad URL, read-only with create, or the server cannot be reached.
    """
    url = resolve_url(url_or_path)
    key = url_key(url)
    if read_only and create:
        raise CatalogError("a catalog cannot be created read-only: open it with create=True only")
    with _LOCK:
        cached = _REGISTRY.get((key, read_only))
        if cached is not None and not cached.closed:
            return cached
        path = duckdb_path(url)
        if path is not None:
            check_duckdb_target(path, create=create, read_only=read_only)  # before anything is created
        if path is not None and not path.exists() and not create:
            raise NotFound(f"no catalog at {path}: create it with `circuits db init --db {path}`")

        def attempt() -> Catalog:
            cat = _new_catalog(url, key, read_only)
            try:
                with connect_errors(cat.url):
                    _check_or_create(cat, create=create)
            except BaseException:
                cat.close()
                raise
            return cat

        cat = retry_while_locked(attempt, url, wait)
        _REGISTRY[(key, read_only)] = cat
        return cat


def _release_duckdb_at_exit() -> None:
    """Close catalogs and drop DuckDB's module-level type constants before interpreter teardown.

    With torch loaded too, DuckDB's nanobind bindings otherwise print ~100 lines of benign
    "nanobind: leaked instance … DuckDBPyType" warnings at every exit (the constants in
    `duckdb.sqltypes` outlive the module teardown). Runs via atexit, before that teardown.
    """
    close_all()
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("duckdb", "_duckdb")):
            continue
        for attr, value in list(vars(module).items()):
            if type(value).__name__ == "DuckDBPyType":
                delattr(module, attr)
    import gc
    import typing

    for clear in getattr(typing, "_cleanups", ()):  # typing's caches hold some too (nanobind's advice)
        clear()
    gc.collect()  # free cycles that still hold DuckDB objects while the bindings are alive


atexit.register(_release_duckdb_at_exit)


def close_all() -> None:
    """Close every catalog opened in this process (tests; before replacing a file)."""
    with _LOCK:
        for cat in list(_REGISTRY.values()):
            cat.close()


def close_catalogs_of(url_or_path: str | os.PathLike[str] | None) -> None:
    """Close this process's catalogs of one database (read-only and read-write).

    Raises:
        CatalogLocked: one of them has a session in use.
    """
    key = url_key(resolve_url(url_or_path))
    with _LOCK:
        for ro in (True, False):
            cat = _REGISTRY.get((key, ro))
            if cat is None:
                continue
            if _in_use(cat._engine):
                raise CatalogLocked(f"catalog {cat.display} has a session in use in this process: close it first")
            cat.close()


def cached_catalog(url_or_path: str | os.PathLike[str] | None) -> Catalog | None:
    """The catalog of this database already open in this process (read-write first), or None."""
    key = url_key(resolve_url(url_or_path))
    with _LOCK:
        for ro in (False, True):
            cat = _REGISTRY.get((key, ro))
            if cat is not None and not cat.closed:
                return cat
    return None


def _in_use(engine: Engine) -> bool:
    checkedout = getattr(engine.pool, "checkedout", None)  # pools without it hold no files
    return bool(checkedout and checkedout())


def driver_connection(session: Session) -> Any:
    """The DBAPI driver's own connection under the session's transaction, for bulk I/O.

    For DuckDB a `duckdb.DuckDBPyConnection` (use `register`/`sql`/`execute`); for PostgreSQL a
    `psycopg.Connection` (use `cursor().copy`). Statements on it run in the session's transaction.

    Args:
        session: a session; its transaction is begun if it has not been.

    Returns:
        The driver connection.
    """
    raw = session.connection().connection.driver_connection
    # duckdb-engine wraps the DuckDB connection; the wrapper forwards attributes, but the real
    # object has the complete API (relations, Arrow export without extra copies).
    return getattr(raw, "_ConnectionWrapper__c", raw)


def _new_catalog(url: URL, key: str, read_only: bool) -> Catalog:
    if url.get_backend_name() != "duckdb":
        engine = build_engine(url, read_only=read_only)
        return Catalog(url, engine, read_only=read_only, connection_read_only=read_only)
    if url.database in (None, "", ":memory:") and read_only:
        raise CatalogError("an in-memory catalog cannot be opened read-only")
    if read_only:
        rw = _REGISTRY.get((key, False))
        if rw is not None and not rw.closed:
            engine = build_engine(url, read_only=False, read_only_transactions=True)
            return Catalog(url, engine, read_only=True, connection_read_only=False)
        return Catalog(url, build_engine(url, read_only=True), read_only=True, connection_read_only=True)
    ro = _REGISTRY.get((key, True))
    if ro is not None and not ro.closed and ro.connection_read_only:
        if _in_use(ro._engine):
            raise CatalogLocked(
                f"catalog {ro.display} is open read-only in this process with a session in use: "
                "close that session before opening it for writing"
            )
        shared = build_engine(url, read_only=False, read_only_transactions=True)
        ro._rebind(shared, connection_read_only=False)
    return Catalog(url, build_engine(url, read_only=False), read_only=False, connection_read_only=False)


def _check_or_create(cat: Catalog, *, create: bool) -> None:
    with cat.engine.connect() as conn:
        revision = migrate.current_revision(conn)
        if revision == _revision.SCHEMA_HEAD:  # the usual case: one query, no table listing
            return
        tables = migrate.user_tables(conn)
    if revision is None and create:
        # Read both again under the lock: another process may be creating the schema right now,
        # and may have committed between the two reads above (tables seen, its revision not).
        with cat.engine.begin() as conn:
            migrate.lock_schema(conn)
            revision, tables = migrate.current_revision(conn), migrate.user_tables(conn)
            if revision is None and not tables:
                migrate.upgrade(conn)
                return
    check_revision(revision, bool(tables), display(cat.url))  # NotFound, SchemaOutdated
