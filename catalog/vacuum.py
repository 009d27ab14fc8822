"""`circuits db vacuum`: give a catalog's unused space back.

DuckDB keeps the blocks of deleted or rewritten rows (a failed run, a migration, bulk deletes) as
free blocks inside the file and reuses them for new rows, but never shrinks the file.
`vacuum_catalog` rewrites it compactly: `COPY FROM DATABASE` into a new file beside it (tables,
indexes, constraints, sequences and views), a row count check of every table, then an atomic
rename. It holds the catalog's write lock throughout, so it needs the file to itself (no `serve`
or ingest running) and free disk for the copy. The copy has `catalog.connect.DUCKDB_BLOCK_SIZE`
blocks, so a file made with DuckDB's default 256 kB blocks also shrinks by its score words' slack.

PostgreSQL: `VACUUM (ANALYZE)` makes dead rows' space reusable and refreshes the planner's
statistics; the server keeps the space (`VACUUM FULL` returns it to the OS under exclusive locks:
run it yourself in a quiet moment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from catalog.connect import DUCKDB_BLOCK_SIZE, connect_errors, display, duckdb_path
from catalog.db_path import check_duckdb_target, open_error
from catalog.engine import build_engine, close_catalogs_of, resolve_url
from catalog.errors import CatalogError, NotFound

__all__ = ["VacuumResult", "vacuum_catalog"]


@dataclass(frozen=True)
class VacuumResult:
    """Sizes before and after (DuckDB: the file with its WAL; PostgreSQL: the database)."""

    display: str
    backend: str
    before_bytes: int
    after_bytes: int

    def describe(self) -> str:
        """One line for humans."""
        mb = 1e6
        line = f"catalog {self.display}: {self.before_bytes / mb:.1f} MB -> {self.after_bytes / mb:.1f} MB"
        if self.backend == "duckdb":
            return line + f" ({max(0, self.before_bytes - self.after_bytes) / mb:.1f} MB of free blocks given back)"
        return line + " (vacuumed and analysed; PostgreSQL keeps freed space for reuse, VACUUM FULL returns it)"


def vacuum_catalog(url_or_path: str | os.PathLike[str] | None = None) -> VacuumResult:
    """Compact a DuckDB catalog file, or VACUUM (ANALYZE) a PostgreSQL catalog.

    Args:
        url_or_path: the catalog (see `catalog.engine.resolve_url`).

    Returns:
        The sizes before and after.

    Raises:
        NotFound: no DuckDB file there.
        CatalogLocked: another process has the DuckDB file open.
        CatalogError: the copy does not hold every row (the original is kept), or the server
            cannot be reached.
    """
    url = resolve_url(url_or_path)
    path = duckdb_path(url)
    if path is None:
        return _vacuum_postgres(url)
    if not path.is_file():
        raise NotFound(f"no catalog at {path}: create it with `circuits db init --db {path}`")
    check_duckdb_target(path, create=False, read_only=False)  # a folder, not DuckDB, not writable
    close_catalogs_of(str(path))  # this process's own connections: DuckDB allows one configuration
    return _compact_duckdb(path)


def _size(path: Path) -> int:
    wal = path.with_name(path.name + ".wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _compact_duckdb(path: Path) -> VacuumResult:
    import duckdb

    before = _size(path)
    tmp = path.with_name(path.name + ".vacuum-tmp")
    for stale in (tmp, tmp.with_name(tmp.name + ".wal")):
        stale.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(path))  # read-write: DuckDB's file lock keeps other processes out
    except duckdb.Error as exc:
        detail = str(exc).splitlines()[0]
        raise open_error(detail, str(path)) or CatalogError(f"cannot open catalog {path}: {detail}") from None
    try:
        con.execute("CHECKPOINT")
        name = con.sql("SELECT current_database()").fetchall()[0][0]
        tables = [t for (t,) in con.sql("SELECT table_name FROM duckdb_tables() WHERE NOT internal").fetchall()]
        con.execute(f"ATTACH '{_quote(str(tmp))}' AS vacuum_copy (BLOCK_SIZE {DUCKDB_BLOCK_SIZE})")
        try:
            con.execute(f'COPY FROM DATABASE "{name}" TO vacuum_copy')
            for table in tables:
                n_old = con.sql(f'SELECT count(*) FROM "{name}"."{table}"').fetchall()[0][0]
                n_new = con.sql(f'SELECT count(*) FROM vacuum_copy."{table}"').fetchall()[0][0]
                if n_old != n_new:
                    raise CatalogError(f"the compacted copy of {path} holds {n_new} rows of {table}, not {n_old}")
            con.execute("CHECKPOINT vacuum_copy")
        finally:
            con.execute("DETACH vacuum_copy")
        os.replace(tmp, path)  # still holding the old file's lock: no write can fall in between
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    return VacuumResult(str(path), "duckdb", before, _size(path))


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _vacuum_postgres(url: sa.engine.URL) -> VacuumResult:
    engine = build_engine(url, read_only=False, poolclass=sa.pool.NullPool)
    size = sa.text("SELECT pg_database_size(current_database())")
    try:
        with connect_errors(url), engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM refuses a transaction
            before = int(conn.execute(size).scalar_one())
            conn.execute(sa.text("VACUUM (ANALYZE)"))
            after = int(conn.execute(size).scalar_one())
    finally:
        engine.dispose()
    return VacuumResult(display(url), "postgresql", before, after)
