"""Pages of the catalog's listings: keyset pagination (a stable order, "after the row with this
id") with the count of matching rows, for `circuits list` and the web view's home page.

A page reads its rows plus one (to know whether more follow) and two counts, whatever the size of
the catalog; the per-row counts (runs per model, circuits per run, ...) are computed for the page's
rows only (`queries.listing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from catalog.errors import CircuitsError
from catalog.sql import query_arrow
from queries._listing_sql import SOURCES, check_page, filters
from queries.listing import list_circuits, list_concepts, list_models, list_runs

__all__ = ["LISTABLE", "PAGE_ROWS", "Page", "count_rows", "list_page"]

LISTABLE = ("models", "concepts", "runs", "circuits")
PAGE_ROWS = 100
"""Rows per page by default: a page of any listing prints in well under a second at 10,000 runs."""


@dataclass(frozen=True)
class Page:
    """One page of a listing.

    Attributes:
        what: "models", "concepts", "runs" or "circuits".
        rows: the page's rows (`queries.listing` ModelRow, ConceptRow, RunRow or CircuitRow).
        total: rows matching the filters, on all pages.
        start: matching rows before this page.
        next_after: the cursor of the next page (the last row's id), None on the last page.
    """

    what: str
    rows: list[Any]
    total: int
    start: int
    next_after: int | str | None

    def summary(self, option: str = "`after=`") -> str:
        """One line: which rows these are of how many, and how to get the next page."""
        if not self.rows:
            return f"no {self.what} here ({self.total:,} in all)"
        shown = f"{self.what} {self.start + 1:,}–{self.start + len(self.rows):,} of {self.total:,}"
        return shown + (f"; next page: {option} {self.next_after}" if self.next_after is not None else "")


def list_page(
    session: Session,
    what: str,
    model: str | None = None,
    concept: str | None = None,
    status: str | None = None,
    *,
    search: str | None = None,
    after: int | None = None,
    limit: int = PAGE_ROWS,
) -> Page:
    """One page of `queries.listing.list_<what>` in its order, after the row with id `after`.

    Args:
        session: the caller's session.
        what: "models", "concepts", "runs" or "circuits".
        model, concept, status, search: the listing's filters (models take search only; concepts
            model and search; circuits default to complete runs).
        after: the cursor (`Page.next_after` of the previous page); None for the first page.
        limit: rows per page (at least 1).

    Raises:
        CircuitsError: an unknown `what` or status, or a limit below 1.
    """
    check_page(after, limit)
    if what == "models":
        rows: list[Any] = list_models(session, search=search, after=after, limit=limit + 1)
    elif what == "concepts":
        rows = list_concepts(session, model, search=search, after=after, limit=limit + 1)
    elif what == "runs":
        rows = list_runs(session, model, concept, status, search=search, after=after, limit=limit + 1)
    elif what == "circuits":
        rows = list_circuits(session, model, concept, status or "complete", search=search, after=after, limit=limit + 1)
    else:
        raise CircuitsError(f"cannot list {what!r}: use {', '.join(LISTABLE)}")
    more = len(rows) > limit
    rows = rows[:limit]
    if what == "circuits":
        status = status or "complete"
    total = count_rows(session, what, model, concept, status, search=search)
    remaining = (
        total if after is None else count_rows(session, what, model, concept, status, search=search, after=after)
    )
    return Page(what, rows, total, total - remaining, rows[-1].id if more else None)


def count_rows(
    session: Session,
    what: str,
    model: str | None = None,
    concept: str | None = None,
    status: str | None = None,
    *,
    search: str | None = None,
    after: int | None = None,
) -> int:
    """How many rows `list_<what>` returns with these filters over all pages, or after the row
    `after` (`what`: "models", "concepts", "runs" or "circuits"; the filters each listing takes).

    Raises:
        CircuitsError: an unknown `what` or status.
    """
    if what not in SOURCES:
        raise CircuitsError(f"cannot count {what!r}: use models, concepts, runs or circuits")
    where, params = filters(what, search, after, model=model, concept=concept, status=status)
    check_page(after, None)
    return int(query_arrow(session, f"SELECT count(*) AS n {SOURCES[what].tables}{where}", params).to_pylist()[0]["n"])
