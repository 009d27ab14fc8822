"""Checks on a DuckDB catalog path before DuckDB touches it, and DuckDB's open errors in words.

`check_duckdb_target` runs before a catalog file is opened or created: a folder, a missing parent
folder (never created for the user), a file that is not a DuckDB database, or a location the
process cannot write each become one `CatalogError` line naming the path and the next step, instead
of a SQLAlchemy traceback or a silently created directory. `open_error` sorts DuckDB's own open
errors: a lock held by another process, a corrupt file, a permission problem.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from catalog.errors import CatalogError, CatalogLocked

__all__ = ["CatalogCorrupt", "check_duckdb_target", "open_error"]

DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file
_MAGIC_AT = 8


class CatalogCorrupt(CatalogError):
    """The catalog file is damaged or is not a DuckDB database."""


def check_duckdb_target(path: str | os.PathLike[str], *, create: bool, read_only: bool) -> None:
    """Refuse a DuckDB catalog path that cannot work, before anything is created.

    Args:
        path: the absolute catalog file path.
        create: the caller would create a missing file.
        read_only: the caller opens the file read-only (no write access needed).

    Raises:
        CatalogError: a folder; a missing parent folder; an unwritable location (for writing).
        CatalogCorrupt: an existing file that is not a DuckDB database.
        (A missing file without `create` is left to the caller, which names `circuits db init`.)
    """
    p = Path(path)
    if p.is_dir():
        raise CatalogError(f"{p} is a folder, not a catalog file: give a file path such as {p / 'circuits.duckdb'}")
    if not p.exists():
        if not create:
            return
        parent = p.parent
        if not parent.is_dir():
            what = "is a file, not a folder" if parent.exists() else "does not exist"
            raise CatalogError(f"cannot create catalog {p}: folder {parent} {what} (create the folder first)")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise CatalogError(f"cannot create catalog {p}: folder {parent} is not writable")
        return
    try:
        with open(p, "rb") as f:
            head = f.read(_MAGIC_AT + len(DUCKDB_MAGIC))
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {p}: {exc.strerror or exc}") from None
    if head[_MAGIC_AT:] != DUCKDB_MAGIC:
        raise CatalogCorrupt(
            f"{p} is not a DuckDB catalog ({'empty file' if not head else 'no DuckDB header'}): "
            "check the path, or create a new catalog with `circuits db init --db NEW_FILE`"
        )
    if not read_only and not (os.access(p, os.W_OK) and os.access(p.parent, os.W_OK | os.X_OK)):
        raise CatalogError(
            f"catalog {p} is not writable here (file or folder permissions): this command writes; "
            "read commands still work, or copy the file somewhere writable"
        )


def open_error(detail: str, where: str) -> CatalogError | None:
    """DuckDB's error on opening `where` as a one-line CatalogError, or None when it is none of these.

    A lock conflict is matched on DuckDB's lock wording only ("Could not set lock", "Conflicting
    lock"), so "Corrupt database file … in block …" is never read as "in use".
    """
    low = detail.lower()
    if "could not set lock" in low or "conflicting lock" in low:
        pid = re.search(r"PID \d+", detail)
        holder = f" ({pid.group(0)})" if pid else ""
        return CatalogLocked(
            f"catalog {where} is in use by another process{holder}: wait for it to finish "
            "(DuckDB allows one writer, or several readers when nobody writes)"
        )
    if any(w in low for w in ("corrupt", "not a valid duckdb", "checksum", "failed to read database header")):
        return CatalogCorrupt(
            f"catalog {where} is corrupt ({detail.strip()[:200]}): nothing was changed; restore it "
            "from a backup (`circuits db upgrade` leaves *.bak-* copies beside it)"
        )
    if "permission denied" in low or "read-only file system" in low:
        return CatalogError(f"cannot open catalog {where}: {detail.strip()[:200]} (check the file's permissions)")
    return None
