"""Reading a user query's rows under the sandbox's caps (`catalog.sql`), and the PostgreSQL side.

Rows are read in growing batches and counted in bytes as they come: reading stops with
`ResultTooLarge` once they pass the cap, so a huge result is never held whole. On PostgreSQL each
query gets a fresh connection (read-only transaction, statement timeout, role check) that is
closed afterwards, so advisory locks and settings a query takes end with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from catalog.errors import CatalogError, QueryError, ReadOnlyViolation
from catalog.sql_limits import ResultTooLarge, check_postgres_role, timeout_error

__all__ = ["QueryResult", "first_paragraph", "postgres_query", "read_capped"]


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


def read_capped(
    fetchmany: Callable[[int], Sequence[Any]], columns: tuple[str, ...], max_rows: int | None, max_bytes: int | None
) -> QueryResult:
    """Read rows in batches until `max_rows` + 1 (to know about truncation), the end, or the byte cap."""
    rows: list[tuple[Any, ...]] = []
    size, batch = 0, 64
    while max_rows is None or len(rows) <= max_rows:
        want = batch if max_rows is None else min(batch, max_rows + 1 - len(rows))
        chunk = fetchmany(want)
        for row in chunk:
            size += _row_bytes(row)
            if max_bytes is not None and size > max_bytes:
                raise ResultTooLarge(
                    f"the result is larger than {_mb(max_bytes)} (`max_bytes=`): stopped reading after "
                    f"{len(rows)} rows; select fewer rows or columns (LIMIT, WHERE), or raise `max_bytes=`"
                )
            rows.append(tuple(row))
        if len(chunk) < want:
            break
        batch = min(batch * 4, 4096)
    truncated = max_rows is not None and len(rows) > max_rows
    return QueryResult(columns, rows[:max_rows], truncated)


def _row_bytes(row: Any) -> int:
    """About how many bytes a row takes to hold and print (text and blobs by length, others 16)."""
    total = 0
    for value in row:
        if isinstance(value, str | bytes | bytearray | memoryview):
            total += len(value) + 16
        elif isinstance(value, list | tuple | dict):
            total += len(str(value)) + 16
        else:
            total += 16
    return total


def _mb(n: int) -> str:
    return f"{n / 1e6:g} MB" if n >= 1_000_000 else f"{n} bytes"


def postgres_query(
    url: Any,
    query: str,
    max_rows: int | None,
    max_bytes: int | None,
    timeout_s: float | None = None,
    allow_superuser: bool = False,
) -> QueryResult:
    """One query on a fresh PostgreSQL connection, read-only, streamed, closed afterwards."""
    import psycopg

    from catalog.connect import pg_conninfo

    conninfo, kwargs = pg_conninfo(url, read_only=True)
    try:
        conn = psycopg.connect(conninfo, **kwargs)
    except psycopg.Error as exc:
        raise CatalogError(f"cannot connect to {url.render_as_string(hide_password=True)}: {exc}") from exc
    try:
        with conn.cursor() as cur:
            check_postgres_role(cur, allow=allow_superuser)
            cur.execute("SET TRANSACTION READ ONLY")
            if timeout_s is not None and timeout_s > 0:  # this transaction only
                cur.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(timeout_s * 1000)}ms",))
            try:
                # The statement is prepared first (one statement only: a `SET … ; COMMIT; …`
                # sequence cannot leave the read-only transaction) to learn its columns; rows then
                # come through stream() in batches, so a huge result is never held whole.
                columns = _describe(conn, query)
                if not columns:  # a statement without rows (SET, LISTEN, …): run it, nothing to read
                    cur.execute(query, prepare=True)
                    return QueryResult((), [])
                stream = cur.stream(query, size=256)

                def fetchmany(n: int) -> list[Any]:
                    return [row for _, row in zip(range(n), stream)]

                return read_capped(fetchmany, columns, max_rows, max_bytes)
            except (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege) as exc:
                message = first_paragraph(str(exc))
                raise ReadOnlyViolation(f"refused, the catalog is read-only here: {message}") from exc
            except psycopg.errors.QueryCanceled as exc:
                raise timeout_error(timeout_s) from exc
            except psycopg.Error as exc:
                raise QueryError(first_paragraph(str(exc))) from exc
    finally:
        conn.close()  # rolls back; session state (advisory locks, settings) ends with the connection


def _describe(conn: Any, query: str) -> tuple[str, ...]:
    """The column names of one statement, from preparing it (nothing is executed).

    Raises:
        psycopg.Error: the server refused to prepare it (several statements, a syntax error, …),
            as the exception class of its SQLSTATE.
    """
    import psycopg
    from psycopg import pq

    encoding = conn.info.encoding
    result = conn.pgconn.prepare(b"", query.encode(encoding))
    if result.status != pq.ExecStatus.COMMAND_OK:
        message = (result.error_message or b"").decode(encoding, "replace").strip()
        state = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
        try:
            raise psycopg.errors.lookup(state)(message)
        except KeyError:
            raise psycopg.Error(message) from None
    described = conn.pgconn.describe_prepared(b"")
    return tuple(described.fname(i).decode(encoding) for i in range(described.nfields))


def first_paragraph(message: str) -> str:
    """The database's message up to its first blank line (skips DuckDB's caret excerpt), one line."""
    lines = []
    for line in message.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines)
