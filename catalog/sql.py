"""Read-only SQL over the catalog (`circuits sql`).

Safety comes from the connection, not from inspecting the query's words: the catalog must be
opened read-only (`open_catalog(..., read_only=True)`), so DuckDB itself refuses INSERT, UPDATE,
DELETE, DROP, CREATE, ATTACH …, and with external access disabled also COPY … TO, EXPORT and file
reads. The only statements refused here are transaction control (BEGIN/COMMIT/ROLLBACK, as
classified by DuckDB's parser), because ending the read-only transaction of a catalog that shares
this process's read-write database would let later statements write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from catalog.engine import Catalog, driver_connection
from catalog.errors import CatalogError, QueryError, ReadOnlyViolation

DEFAULT_MAX_ROWS = 10_000


@dataclass(frozen=True)
class QueryResult:
    """Rows of the query's last statement.

    Attributes:
        columns: column names (empty for a statement that returns nothing).
        rows: the rows as tuples of Python values, at most `max_rows` of them.
        truncated: True when the statement returned more rows than were kept.
    """

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    truncated: bool = False


def run_query(cat: Catalog, query: str, *, max_rows: int | None = DEFAULT_MAX_ROWS) -> QueryResult:
    """Run SQL (one or more statements) on a read-only catalog and return the last result.

    Args:
        cat: a catalog opened with `read_only=True`.
        query: the SQL text.
        max_rows: keep at most this many rows (None: all).

    Returns:
        The last statement's columns and rows.

    Raises:
        ReadOnlyViolation: a statement would change the catalog or touch files.
        QueryError: the database rejected the SQL (its message, one line).
        CatalogError: the catalog was not opened read-only.
    """
    if not cat.read_only:
        raise CatalogError(
            "run_query needs a catalog opened read-only: open_catalog(..., read_only=True)"
        )
    with cat.session() as session:
        raw = driver_connection(session)
        if cat.backend == "duckdb":
            return _duckdb_query(raw, query, max_rows)
        return _postgres_query(raw, query, max_rows)


def _duckdb_query(raw: Any, query: str, max_rows: int | None) -> QueryResult:
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
        relation = raw.sql(statements[-1].query)
        if relation is None:
            return QueryResult((), [])
        reader = relation.to_arrow_reader(1024)
        rows: list[tuple[Any, ...]] = []
        truncated = False
        for batch in reader:
            rows.extend(zip(*(col.to_pylist() for col in batch.columns)))
            if max_rows is not None and len(rows) > max_rows:
                rows, truncated = rows[:max_rows], True
                break
        return QueryResult(tuple(reader.schema.names), rows, truncated)
    except duckdb.Error as exc:
        raise _duckdb_error(exc) from exc


def _duckdb_error(exc: Exception) -> CatalogError:
    import duckdb

    text = _first_paragraph(str(exc))
    if isinstance(exc, duckdb.PermissionException) or "read-only" in text or "read only" in text:
        return ReadOnlyViolation(f"refused, the catalog is read-only here: {text}")
    return QueryError(text)


def _postgres_query(raw: Any, query: str, max_rows: int | None) -> QueryResult:
    import psycopg

    with raw.cursor() as cur:
        try:
            # prepare=True uses the extended protocol, which accepts one statement only: a
            # `SET … ; COMMIT; …` sequence cannot leave the read-only transaction.
            cur.execute(query, prepare=True)
            if cur.description is None:
                return QueryResult((), [])
            columns = tuple(d.name for d in cur.description)
            rows = cur.fetchall() if max_rows is None else cur.fetchmany(max_rows + 1)
        except (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege) as exc:
            message = _first_paragraph(str(exc))
            raise ReadOnlyViolation(f"refused, the catalog is read-only here: {message}") from exc
        except psycopg.Error as exc:
            raise QueryError(_first_paragraph(str(exc))) from exc
    truncated = max_rows is not None and len(rows) > max_rows
    return QueryResult(columns, [tuple(r) for r in rows[:max_rows]], truncated)


def _first_paragraph(message: str) -> str:
    """The database's message up to its first blank line (skips DuckDB's caret excerpt), one line."""
    lines = []
    for line in message.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines)
