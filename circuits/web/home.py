"""What the catalog browser's home page shows: models, concepts, circuits, runs and image sets, a
page of each (keyset pagination, `queries.listing_pages`), with counts and next-page links. A
model's or a concept's page (`/model/NAME`, `/concept/NAME`) is the same view, filtered.

Every section reads at most one page of rows whatever the catalog's size; the search box filters
in SQL. Paging one section keeps the others where they were (their cursors stay in the address).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from catalog.errors import CircuitsError, NotFound
from queries.graphs import query_arrow
from queries.listing_pages import Page, list_page

__all__ = ["HOME_ROWS", "SECTIONS", "HomeView", "ImageSetRow", "home_cursors", "home_view"]

HOME_ROWS = 50
"""Rows per section and page: the page stays a few hundred kB of HTML at any catalog size."""
SECTIONS = ("models", "concepts", "circuits", "runs", "image_sets")


@dataclass(frozen=True)
class ImageSetRow:
    concept: str
    image_set_sha256: str
    images: int
    thumbnails: int

    @property
    def id(self) -> str:
        """The image-set page's cursor: concept and sha256 (the section's order)."""
        return f"{self.concept}/{self.image_set_sha256}"


def _section_rows(section: str) -> property:
    """A `HomeView` property: the rows of `section`'s page."""
    return property(lambda view: view.pages[section].rows, doc=f"The rows of this page's {section} section.")


@dataclass(frozen=True)
class HomeView:
    """The home page: a page per section, the search text and each section's links."""

    pages: dict[str, Page]
    query: str = ""
    cursors: dict[str, str] = field(default_factory=dict)
    anchored: frozenset[int] = frozenset()  # ids of this page's circuits with fixed (anchored) layers
    base: str = "/"  # the page these links stay on: "/", "/model/NAME" or "/concept/NAME"

    # The rows of each section's page, for the template (`view.circuits`, …).
    models = _section_rows("models")
    concepts = _section_rows("concepts")
    runs = _section_rows("runs")
    circuits = _section_rows("circuits")
    image_sets = _section_rows("image_sets")

    def summary(self, section: str) -> str:
        """ "circuits 51–100 of 50,000" (or "none")."""
        page = self.pages[section]
        if not page.rows:
            return "" if page.total == 0 else f"no more ({page.total:,} in all)"
        return f"{page.start + 1:,}–{page.start + len(page.rows):,} of {page.total:,}"

    def href(self, section: str, after: object | None) -> str:
        """This page with `section` moved to start after `after` (None: its first page)."""
        params = {k: v for k, v in self.cursors.items() if k != f"{section}_after"}
        if after is not None:
            params[f"{section}_after"] = str(after)
        if self.query:
            params = {"q": self.query, **params}
        query = urllib.parse.urlencode(params)
        return (f"{self.base}?{query}" if query else self.base) + f"#{section.replace('_', '-')}"

    def next_href(self, section: str) -> str | None:
        page = self.pages[section]
        return None if page.next_after is None else self.href(section, page.next_after)

    def first_href(self, section: str) -> str | None:
        return self.href(section, None) if f"{section}_after" in self.cursors else None


def home_cursors(params: Mapping[str, list[str]]) -> dict[str, str]:
    """The sections' cursors from the query string (`circuits_after=ID`, ...)."""
    return {f"{s}_after": params[f"{s}_after"][0] for s in SECTIONS if params.get(f"{s}_after")}


def _id_cursor(cursors: Mapping[str, str], section: str) -> int | None:
    text = cursors.get(f"{section}_after")
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise CircuitsError(f"{section}_after must be a row id, got {text!r}") from None


def home_view(
    session: Session,
    q: str = "",
    cursors: Mapping[str, str] | None = None,
    limit: int = HOME_ROWS,
    *,
    model: str | None = None,
    concept: str | None = None,
) -> HomeView:
    """A page of each section, filtered by a search text (a case-insensitive substring of names and
    ids), each section after its cursor (`home_cursors`).

    Args:
        session: the caller's session.
        q: search text.
        cursors: each section's cursor (`home_cursors`).
        limit: rows per section and page.
        model, concept: keep only this model's / this concept's rows (the /model/NAME and
            /concept/NAME pages).

    Raises:
        CircuitsError: a cursor that is not a row id.
        NotFound: no such model or concept.
    """
    q = q.strip()
    cursors = dict(cursors or {})
    _check_exists(session, model, concept)
    pages = {
        what: list_page(
            session,
            what,
            model=model if what != "models" else None,
            concept=concept if what in ("runs", "circuits") else None,
            search=q or None,
            after=_id_cursor(cursors, what),
            limit=limit,
        )
        for what in ("models", "concepts", "circuits", "runs")
    }
    if model is not None:
        pages["models"] = _only(pages["models"], lambda m: m.name == model)
    if concept is not None:
        pages["concepts"] = _only(pages["concepts"], lambda c: c.name == concept)
    pages["image_sets"] = _image_sets(session, q, cursors.get("image_sets_after"), limit, concept)
    base = (
        "/"
        if model is None and concept is None
        else f"/{'model' if model else 'concept'}/" + urllib.parse.quote(str(model or concept), safe="")
    )
    circuit_ids = [int(c.id) for c in pages["circuits"].rows]
    return HomeView(pages, q, cursors, _anchored(session, circuit_ids), base)


def _only(page: Page, keep) -> Page:
    rows = [r for r in page.rows if keep(r)]
    return Page(page.what, rows, len(rows), 0, None)


def _check_exists(session: Session, model: str | None, concept: str | None) -> None:
    for table, name in (("model", model), ("concept", concept)):
        if name is None:
            continue
        found = query_arrow(session, f"SELECT 1 AS x FROM {table} WHERE name = :name LIMIT 1", {"name": name})
        if found.num_rows == 0:
            raise NotFound(f"no {table} {name!r} in the catalog")


def _anchored(session: Session, circuit_ids: list[int]) -> frozenset[int]:
    """Which of these circuits have fixed (anchored) layers."""
    from catalog.sql import decode_json

    if not circuit_ids:
        return frozenset()
    ids = ", ".join(str(int(i)) for i in circuit_ids)
    rows = query_arrow(session, f"SELECT id, fixed FROM circuit WHERE fixed IS NOT NULL AND id IN ({ids})").to_pylist()
    return frozenset(int(r["id"]) for r in rows if r["fixed"] is not None and decode_json(r["fixed"]))


def _image_sets(session: Session, q: str, after: str | None, limit: int, concept: str | None = None) -> Page:
    """A page of image sets by concept name and sha256, with image and thumbnail counts."""
    clauses: list[str] = []
    params: dict[str, object] = {}
    if concept is not None:
        clauses.append("c.name = :concept")
        params["concept"] = concept
    if q:
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["search"] = f"%{escaped}%"
        clauses.append("(lower(c.name) LIKE :search ESCAPE '\\' OR lower(e.image_set_sha256) LIKE :search ESCAPE '\\')")

    def count(where: str) -> int:
        sql = (
            "SELECT count(*) AS n FROM (SELECT DISTINCT c.name, e.image_set_sha256 FROM example_image e "
            f"JOIN concept c ON c.id = e.concept_id{where}) s"
        )
        return int(query_arrow(session, sql, params).to_pylist()[0]["n"])

    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    total = count(where)
    before = 0
    if after is not None:
        concept, _, sha = after.rpartition("/")
        params |= {"after_concept": concept, "after_sha": sha}
        clauses.append("(c.name > :after_concept OR (c.name = :after_concept AND e.image_set_sha256 > :after_sha))")
        where = " WHERE " + " AND ".join(clauses)
        before = total - count(where)
    rows = query_arrow(
        session,
        "WITH page AS (SELECT DISTINCT c.name AS concept, e.concept_id, e.image_set_sha256 AS sha "
        f"FROM example_image e JOIN concept c ON c.id = e.concept_id{where} "
        f"ORDER BY concept, sha LIMIT {int(limit) + 1}) "
        "SELECT p.concept, p.sha, count(*) AS images, count(t.example_image_id) AS thumbs FROM page p "
        "JOIN example_image e ON e.concept_id = p.concept_id AND e.image_set_sha256 = p.sha "
        "LEFT JOIN image_thumbnail t ON t.example_image_id = e.id "
        "GROUP BY p.concept, p.sha ORDER BY p.concept, p.sha",
        params,
    ).to_pylist()
    sets = [ImageSetRow(r["concept"], r["sha"], int(r["images"]), int(r["thumbs"])) for r in rows]
    more = len(sets) > limit
    sets = sets[:limit]
    return Page("image sets", sets, total, before, sets[-1].id if more else None)
