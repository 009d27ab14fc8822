"""Pages of the catalog's listings: keyset pagination (a stable order, "after the row with this
id") with the count of matching rows, for `circuits list` and the web view's home page.

A page reads its rows plus one (to know whether more follow) and two counts, whatever the size of
the catalog; the per-row counts (runs per model, circuits per run, ...) are computed for the page's
rows only (`queries.listing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Unpack

from sqlalchemy.orm import Session

from catalog.errors import CircuitsError
from catalog.sql import query_arrow
from queries._listing_sql import SOURCES, Window, filters, window_of
from queries.listing import list_circuits, list_concepts, list_models, list_runs

__all__ = ["LISTABLE", "PAGE_ROWS", "Filters", "Page", "list_page"]

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


class Filters(Window, total=False):
    """What `list_page` takes: a listing's filters (exact; a listing ignores those it does not
    take: models take none, concepts `model`, runs and circuits all three) and its `Window`."""

    model: str | None
    concept: str | None
    status: str | None


def list_page(session: Session, what: str, **filters: Unpack[Filters]) -> Page:
    """One page of `queries.listing.list_<what>` in its order, after the row with id `after`.

    Args:
        session: the caller's session.
        what: "models", "concepts", "runs" or "circuits".
        filters: `model`, `concept`, `status` (circuits default to complete runs) and the page:
            `search`, `after` (`Page.next_after` of the previous page; None for the first page) and
            `limit` (rows per page, `PAGE_ROWS` by default), as `Filters` says.

    Raises:
        CircuitsError: an unknown `what` or status, or a limit below 1.
        TypeError: a keyword `Filters` does not have.
    """
    model, concept = filters.pop("model", None), filters.pop("concept", None)
    status = filters.pop("status", None) or ("complete" if what == "circuits" else None)
    exact = {"model": model, "concept": concept, "status": status}
    search, after, limit = window_of("list_page", filters)
    limit = PAGE_ROWS if limit is None else limit
    window = Window(search=search, after=after, limit=limit + 1)
    if what == "models":
        rows: list[Any] = list_models(session, **window)
    elif what == "concepts":
        rows = list_concepts(session, model, **window)
    elif what == "runs":
        rows = list_runs(session, model, concept, status, **window)
    elif what == "circuits":
        rows = list_circuits(session, model, concept, status, **window)
    else:
        raise CircuitsError(f"cannot list {what!r}: use {', '.join(LISTABLE)}")
    more = len(rows) > limit
    rows = rows[:limit]
    total = _count(session, what, exact, search)
    remaining = total if after is None else _count(session, what, exact, search, after)
    return Page(what, rows, total, total - remaining, rows[-1].id if more else None)


def _count(
    session: Session, what: str, exact: dict[str, str | None], search: str | None, after: int | None = None
) -> int:
    """How many rows `list_<what>` returns with these filters over all pages, or after the row `after`."""
    where, params = filters(what, search, after, **exact)
    return int(query_arrow(session, f"SELECT count(*) AS n {SOURCES[what].tables}{where}", params).to_pylist()[0]["n"])
