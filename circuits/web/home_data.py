"""What the catalog-wide pages show: the home page (and a model's or concept's page, the same
tables filtered), image sets, and the SQL page's list of tables and views. Plain dataclasses
from the caller's Session; the statements here only read. Part of `circuits.web.data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from catalog import media, store
from catalog.errors import NotFound
from queries import listing
from queries.graphs import query_arrow

__all__ = ["HomeView", "ImageSetRow", "SchemaTable", "home_view", "image_set_view", "run_of", "schema_view"]


@dataclass(frozen=True)
class ImageSetRow:
    concept: str
    image_set_sha256: str
    images: int
    thumbnails: int


@dataclass(frozen=True)
class HomeView:
    models: list
    concepts: list
    runs: list
    circuits: list
    image_sets: list[ImageSetRow] = field(default_factory=list)
    query: str = ""
    anchored: frozenset[int] = frozenset()  # ids of circuits with fixed (anchored) layers


def _anchored(session: Session) -> frozenset[int]:
    from catalog.sql import decode_json

    rows = query_arrow(session, "SELECT id, fixed FROM circuit WHERE fixed IS NOT NULL").to_pylist()
    return frozenset(int(r["id"]) for r in rows if r["fixed"] is not None and decode_json(r["fixed"]))


def _matches(q: str, *values: object) -> bool:
    return not q or any(q.lower() in str(v).lower() for v in values)


def home_view(session: Session, q: str = "", *, model: str | None = None, concept: str | None = None) -> HomeView:
    """The catalog's models, concepts, runs, circuits and image sets, filtered by a search text.

    Args:
        session: the caller's session.
        q: search text (any column).
        model, concept: keep only this model's / this concept's rows (the /model/NAME and
            /concept/NAME pages). Raises NotFound when there is no such model or concept.
    """
    q = q.strip()
    if model is not None or concept is not None:
        return _one_view(session, model, concept)
    sets = query_arrow(
        session,
        "SELECT c.name AS concept, e.image_set_sha256 AS sha, count(*) AS images, count(t.example_image_id) AS thumbs "
        "FROM example_image e JOIN concept c ON c.id = e.concept_id "
        "LEFT JOIN image_thumbnail t ON t.example_image_id = e.id "
        "GROUP BY c.name, e.image_set_sha256 ORDER BY c.name, e.image_set_sha256",
    ).to_pylist()
    return HomeView(
        [m for m in listing.list_models(session) if _matches(q, m.name, m.architecture, m.id)],
        [c for c in listing.list_concepts(session) if _matches(q, c.name, c.description, c.id)],
        [r for r in listing.list_runs(session) if _matches(q, r.model, r.concept, r.id, r.status)],
        [c for c in listing.list_circuits(session) if _matches(q, c.model, c.concept, c.id)],
        [
            ImageSetRow(r["concept"], r["sha"], int(r["images"]), int(r["thumbs"]))
            for r in sets
            if _matches(q, r["concept"], r["sha"])
        ],
        q,
        _anchored(session),
    )


def _one_view(session: Session, model: str | None, concept: str | None) -> HomeView:
    full = home_view(session)
    models = [m for m in full.models if model is None or m.name == model]
    concepts = [c for c in full.concepts if concept is None or c.name == concept]
    if model is not None and not models:
        raise NotFound(f"no model {model!r} in the catalog")
    if concept is not None and not concepts:
        raise NotFound(f"no concept {concept!r} in the catalog")

    def keep(m: str, c: str) -> bool:
        return (model is None or m == model) and (concept is None or c == concept)

    runs = [r for r in full.runs if keep(r.model, r.concept)]
    circuits = [c for c in full.circuits if keep(c.model, c.concept)]
    if model is not None:
        concepts = [c for c in concepts if any(r.concept == c.name for r in runs)]
    sets = [s for s in full.image_sets if concept is None or s.concept == concept]
    return HomeView(models, concepts, runs, circuits, sets, "", full.anchored)


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
