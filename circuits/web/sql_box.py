"""The web view's SQL box: each query runs in a child process, in `circuits sql`'s sandbox.

The child (`python -m circuits.web.sql_box`, request as JSON on stdin) calls the same
`catalog.sql.run_sql` as `circuits sql`, under the same address-space cap
(`catalog.sql_limits.address_space_capped`), and answers with JSON on stdout. So a query that
builds gigabytes of strings, or will not stop, costs the child and never the server: the server
kills it at its time limit, and holds no lock and no connection while it runs.

    result = run_in_child("circuits.duckdb", "select count(*) from run", max_rows=1000,
                          max_bytes=20_000_000, timeout_s=30)
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

from catalog.errors import CatalogError, QueryError, ReadOnlyViolation
from catalog.sql_limits import ResultTooLarge, SqlTimeout, UnsafeRole, address_space_cap
from catalog.sql_read import QueryResult

__all__ = ["run_in_child"]

_ERRORS: dict[str, type[CatalogError]] = {
    cls.__name__: cls for cls in (QueryError, ReadOnlyViolation, ResultTooLarge, SqlTimeout, UnsafeRole, CatalogError)
}
_START_S = 15.0  # the child's own start (Python, DuckDB) and its interrupt, beyond the query's limit


def run_in_child(
    db: str,
    query: str,
    *,
    max_rows: int,
    max_bytes: int,
    timeout_s: float,
    memory_limit: str | None = None,
) -> QueryResult:
    """Run `query` with `catalog.sql.run_sql` in a child process (never as a PostgreSQL superuser).

    Args:
        db: the catalog's path (DuckDB) or URL (PostgreSQL).
        query: the SQL text.
        max_rows, max_bytes, timeout_s, memory_limit: see `catalog.sql.run_sql`.

    Returns:
        The rows; values other than numbers, text and None come back as their text.

    Raises:
        QueryError, ReadOnlyViolation, ResultTooLarge, SqlTimeout, UnsafeRole, CatalogError: as
            `run_sql` raised them in the child; SqlTimeout also when the child had to be killed.
    """
    request = {
        "db": db,
        "query": query,
        "max_rows": max_rows,
        "max_bytes": max_bytes,
        "timeout_s": timeout_s,
        "memory_limit": memory_limit,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "circuits.web.sql_box"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout_s + _START_S,
        )
    except subprocess.TimeoutExpired:
        raise SqlTimeout(f"the query ran longer than {timeout_s:g} s and was stopped: narrow it") from None
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        detail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise QueryError(f"the query's process failed ({detail[:200]}): narrow the query") from None
    if "error" in answer:
        raise _ERRORS.get(answer["kind"], QueryError)(answer["error"])
    return QueryResult(tuple(answer["columns"]), [tuple(row) for row in answer["rows"]], answer["truncated"])


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)  # dates, decimals, blobs, lists: the page shows their text


def main() -> None:
    """The child: one request on stdin, one JSON answer on stdout."""
    from catalog.sql import run_sql
    from catalog.sql_limits import address_space_capped

    request = json.loads(sys.stdin.read())
    try:
        with address_space_capped(address_space_cap(request["memory_limit"], request["max_bytes"])):
            result = run_sql(
                request["db"],
                request["query"],
                max_rows=request["max_rows"],
                max_bytes=request["max_bytes"],
                timeout_s=request["timeout_s"],
                memory_limit=request["memory_limit"],
                allow_superuser=False,  # a page anyone who reaches the server can use
            )
        answer: dict[str, Any] = {
            "columns": list(result.columns),
            "rows": [[_plain(v) for v in row] for row in result.rows],
            "truncated": result.truncated,
        }
    except CatalogError as exc:
        kind = next((c.__name__ for c in type(exc).__mro__ if c.__name__ in _ERRORS), "QueryError")
        answer = {"error": str(exc), "kind": kind}
    except MemoryError:
        answer = {"error": "out of memory: the query's result is too large: narrow it", "kind": "QueryError"}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
