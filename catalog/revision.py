"""The schema revision this code expects, and the check of a database's revision against it.

Standard library only, so the fast read path (`catalog.sql.run_sql`) can check a DuckDB file's
revision without importing SQLAlchemy or Alembic. Revision ids are zero-padded numbers (`0001`,
`0002`, …), one linear history (see `catalog.migrate`).
"""

from __future__ import annotations

from catalog.errors import NotFound, SchemaOutdated

__all__ = ["SCHEMA_HEAD", "VERSION_TABLE", "check_revision", "revision_number"]

SCHEMA_HEAD = "0006"
"""The revision this version of the code expects; a test checks it is the scripts' only head."""
VERSION_TABLE = "alembic_version"


def revision_number(revision: str) -> int | None:
    """The integer order of a revision id like "0003" (None for ids not in that form)."""
    return int(revision) if revision.isdigit() else None


def check_revision(revision: str | None, has_tables: bool, where: str) -> None:
    """Raise unless a database at `revision` is usable by this version of the code.

    Args:
        revision: the database's revision (None: no version table or an empty one).
        has_tables: whether it has tables other than the version table.
        where: the database as shown to the user (a path, or a URL without password).

    Raises:
        NotFound: an empty database.
        SchemaOutdated: another revision, or tables without a revision.
    """
    head = SCHEMA_HEAD
    if revision == head:
        return
    if revision is None and not has_tables:
        raise NotFound(f"{where} has no catalog in it: create one with `circuits db init --db {where}`")
    if revision is None:
        raise SchemaOutdated(
            f"{where} has tables but no catalog schema revision: back it up, then run "
            f"`circuits db upgrade --db {where}`"
        )
    number, head_number = revision_number(revision), revision_number(head)
    if number is not None and head_number is not None and number < head_number:
        raise SchemaOutdated(
            f"catalog {where} is at schema {revision}, this version expects {head}: run "
            f"`circuits db upgrade --db {where}` (it backs the file up first)"
        )
    raise SchemaOutdated(
        f"catalog {where} is at schema {revision}, which this version (schema {head}) does not "
        "know: upgrade visual-circuit-catalog"
    )
