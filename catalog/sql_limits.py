"""Bounds and sandboxing of user SQL (`circuits sql` and serve's SQL box): a time limit, a memory
cap, no spill files, a safe role, a cap on the result's size.

DuckDB: the read-only connection gets a memory cap, a locked configuration (no `SET` can raise the
cap or re-enable file access) and no temporary directory (a large sort fails with an
out-of-memory error instead of spilling gigabytes next to the catalog), and a timer thread
interrupts the connection when the time limit passes. PostgreSQL: each query gets a fresh
connection in a read-only transaction with a `statement_timeout` (closed afterwards, so advisory
locks and settings die with it), and only as a role that can neither run programs nor read or
write server files (`COPY … PROGRAM`, `pg_read_file`): a superuser or a member of
`pg_read_server_files`, `pg_write_server_files` or `pg_execute_server_program` is refused, with the
SQL that creates a read-only role. Both: rows are read in small batches and reading stops with
`ResultTooLarge` once the result passes `max_bytes` (default 100 MB).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from catalog.errors import CatalogError, QueryError

__all__ = [
    "ALLOW_SUPERUSER_ENV",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT_S",
    "ResultTooLarge",
    "SqlTimeout",
    "UnsafeRole",
    "address_space_cap",
    "address_space_capped",
    "check_postgres_role",
    "check_query_text",
    "default_memory_limit",
    "duckdb_sandbox_config",
    "interrupt_after",
    "parse_size",
    "superuser_allowed",
]

ALLOW_SUPERUSER_ENV = "CIRCUITS_SQL_ALLOW_SUPERUSER"
"""Set to 1 to let `circuits sql` run as a superuser anyway (you trust every query you run)."""
DEFAULT_TIMEOUT_S = 60.0  # an interactive query; raise it with --timeout for a long report
DEFAULT_MAX_BYTES = 100_000_000  # a result to read on a terminal or a page, not a bulk export
_DANGEROUS_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")


class SqlTimeout(QueryError):
    """A `circuits sql` statement ran past its time limit and was stopped."""


class ResultTooLarge(QueryError):
    """A user query's result passed the byte cap; reading stopped."""


class UnsafeRole(CatalogError):
    """`circuits sql` on PostgreSQL as a role that could run programs or read server files."""


def default_memory_limit() -> str:
    """Half the machine's memory, at most 4 GiB: room for real queries, not for a runaway join."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return f"{max(256, min(4096, total // 2 >> 20))}MB"


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 1 << 10, "MIB": 1 << 20}
_UNITS |= {"GIB": 1 << 30, "TIB": 1 << 40}


def parse_size(text: str | int, what: str = "`max_bytes=`") -> int:
    """A byte count from `123`, `100MB`, `2GiB` (decimal or binary units).

    Raises:
        QueryError: not a size.
    """
    if isinstance(text, int):
        value = text
    else:
        raw = text.strip().upper().replace(" ", "")
        digits = raw.rstrip("KMGTIB")
        unit = raw[len(digits) :]
        try:
            value = int(float(digits) * _UNITS[unit])
        except (KeyError, ValueError):
            raise QueryError(f"{what} {text!r} is not a size: give bytes or e.g. 100MB, 2GB") from None
    if value <= 0:
        raise QueryError(f"{what} {text!r} must be more than 0 bytes")
    return value


def address_space_cap(memory_limit: str | None, max_bytes: int | None) -> int:
    """A process address-space limit (bytes) for a process that runs one sandboxed query.

    DuckDB's `memory_limit` covers its buffers but not the string data of a result chunk (2,048
    rows computed at once: 30 rows of `repeat('x', 100000000)` are 3 GB): this cap makes such an
    allocation fail as DuckDB's out-of-memory error instead. Room is left for the interpreter, the
    result kept (twice `max_bytes`) and each thread's stack and malloc arena.
    """
    cap = parse_size(memory_limit or default_memory_limit(), "`memory_limit=`")
    keep = 2 * (max_bytes or DEFAULT_MAX_BYTES)
    return cap + keep + (1 << 30) + (96 << 20) * (os.cpu_count() or 4)


def duckdb_sandbox_config(memory_limit: str | None = None) -> dict[str, Any]:
    """The config of `circuits sql`'s DuckDB connection (locked: no statement can change it)."""
    return {
        "enable_external_access": False,
        "memory_limit": memory_limit or default_memory_limit(),
        "temp_directory": "",  # no spill files: a too-large sort fails instead of filling the disk
        "max_temp_directory_size": "0B",
        "lock_configuration": True,
    }


def check_query_text(query: str) -> str:
    """The query, refused when empty or not valid text (e.g. invalid UTF-8 from the shell)."""
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise QueryError(
            f"the query is not valid UTF-8 (byte {exc.start} of the text): retype it or save it as UTF-8"
        ) from None
    if not query.strip():
        raise QueryError("the query is empty")
    return query


@contextmanager
def interrupt_after(timeout_s: float | None, interrupt: Callable[[], None]) -> Iterator[Callable[[], bool]]:
    """Call `interrupt` from a timer thread after `timeout_s` seconds (None or ≤ 0: never).

    Yields:
        A function telling whether the timer fired (so the caller can say "timed out").
    """
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        interrupt()

    timer = None
    if timeout_s is not None and timeout_s > 0:
        timer = threading.Timer(timeout_s, fire)
        timer.daemon = True
        timer.start()
    try:
        yield fired.is_set
    finally:
        if timer is not None:
            timer.cancel()


def timeout_error(timeout_s: float | None) -> SqlTimeout:
    return SqlTimeout(
        f"the query ran longer than {timeout_s:g} s and was stopped: narrow it (a WHERE, a LIMIT, "
        "fewer joins) or give more time with `timeout_s=` SECONDS"
    )


def superuser_allowed(explicit: bool | None) -> bool:
    """`explicit` when given, else whether ${ALLOW_SUPERUSER_ENV} is 1."""
    return explicit if explicit is not None else os.environ.get(ALLOW_SUPERUSER_ENV) == "1"


def check_postgres_role(cursor: Any, *, allow: bool = False) -> None:
    """Refuse to run user SQL as a PostgreSQL role that can run programs or read server files.

    A superuser cannot be sandboxed by `SET ROLE`: a `DO` block switches back with
    `set_config('role', …)` and reads server files (checked on PostgreSQL 15), so such a connection
    is refused rather than demoted.

    Args:
        cursor: a cursor of the connection the query will run on.
        allow: run anyway (the caller trusts every query it runs).

    Raises:
        UnsafeRole: the current role is a superuser or a member of a server-file/program role.
    """
    cursor.execute(
        "SELECT current_user, r.rolsuper, "
        + ", ".join(f"pg_has_role(current_user, '{role}', 'MEMBER')" for role in _DANGEROUS_ROLES)
        + " FROM pg_roles r WHERE r.rolname = current_user"
    )
    row = cursor.fetchone()
    if row is None or allow:
        return
    user, superuser, *members = row
    reasons = (["is a superuser"] if superuser else []) + [
        f"is a member of {role}" for role, member in zip(_DANGEROUS_ROLES, members) if member
    ]
    if reasons:
        raise UnsafeRole(
            f"refusing to run `circuits sql` as PostgreSQL role {user!r}: it {' and '.join(reasons)}, so a "
            "query could run programs or read server files (COPY … PROGRAM, pg_read_file). Connect as a "
            "read-only role instead, e.g. as an administrator: CREATE ROLE circuits_reader LOGIN PASSWORD '…'; "
            "GRANT USAGE ON SCHEMA public TO circuits_reader; GRANT SELECT ON ALL TABLES IN SCHEMA public "
            "TO circuits_reader; then `db=` postgresql://circuits_reader@HOST/DB (or, trusting every query you run, "
            f"`allow_superuser=` / {ALLOW_SUPERUSER_ENV}=1)"
        )


@contextmanager
def address_space_capped(extra: int) -> Iterator[None]:
    """Cap this process's address space at its current size + `extra` bytes inside the block (a
    query's result chunks are outside DuckDB's own cap: `address_space_cap`), then restore the
    limit. Process state, so only for a process that runs one query (`circuits sql`, serve's SQL
    child); skipped where the size cannot be read (not Linux)."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            now = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = now + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY and soft <= limit:
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
