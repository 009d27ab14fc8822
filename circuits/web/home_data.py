"""What the catalog-wide pages show beside the home page (`circuits.web.home`): image sets, runs
for links, and the SQL page's list of tables and views. Plain dataclasses from the caller's
Session; the statements here only read. Part of `circuits.web.data`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from catalog import media, store
from queries.graphs import query_arrow

__all__ = ["SchemaTable", "image_set_view", "run_of", "schema_view"]


def image_set_view(session: Session, sha: str) -> list[media.ThumbRow]:
    """An image set's example images (with whether each has a thumbnail). Raises NotFound."""
    return media.image_set_thumbnails(session, sha)


def run_of(session: Session, run_id: int) -> store.RunRef:
    """A run (for links from run rows). Raises NotFound."""
    return store.read_run(session, run_id)


@dataclass(frozen=True)
class SchemaTable:
    """A table or view of the catalog with its columns (name, type), for the SQL page."""

    name: str
    kind: str  # "table" or "view"
    columns: tuple[tuple[str, str], ...]


def schema_view(session: Session) -> list[SchemaTable]:
    """The catalog's tables and views with their columns (information_schema: DuckDB and PostgreSQL)."""
    kinds = {
        r["name"]: ("view" if "VIEW" in str(r["kind"]).upper() else "table")
        for r in query_arrow(
            session,
            "SELECT table_name AS name, table_type AS kind FROM information_schema.tables "
            "WHERE table_schema = current_schema()",
        ).to_pylist()
    }
    columns: dict[str, list[tuple[str, str]]] = {}
    for r in query_arrow(
        session,
        "SELECT table_name AS name, column_name AS col, data_type AS type FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
    ).to_pylist():
        columns.setdefault(r["name"], []).append((r["col"], str(r["type"]).lower()))
    return sorted(
        (SchemaTable(name, kinds.get(name, "table"), tuple(cols)) for name, cols in columns.items()),
        key=lambda t: (t.kind != "view", t.name),
    )
