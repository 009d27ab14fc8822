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
from queries.listing import (
    _AFTER,
    _CIRCUIT_FROM,
    _CIRCUIT_SEARCH,
    _COMPLETE,
    _RUN_FROM,
    _RUN_SEARCH,
    _check_page,
    _check_status,
    _filters,
    _where,
    list_circuits,
    list_concepts,
    list_models,
    list_runs,
)

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
    _check_page(after, limit)
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
    _check_status(status)
    _check_page(after, None)
    if what == "runs":
        clauses, params = _filters(model, concept, status, search, _RUN_SEARCH)
        sql = f"SELECT count(*) AS n {_RUN_FROM}{_where(clauses)}"
    elif what == "circuits":
        clauses, params = _filters(model, concept, status, search, _CIRCUIT_SEARCH)
        sql = f"SELECT count(*) AS n {_CIRCUIT_FROM}{_where(clauses)}"
    elif what == "concepts":
        clauses, params = _filters(None, None, None, search, ("co.name", "coalesce(co.description, '')", "co.id"))
        if model is not None:
            params["model"] = model.partition("@")[0]
            clauses.append(
                "EXISTS (SELECT 1 FROM run r JOIN model m ON m.id = r.model_id "
                f"WHERE r.concept_id = co.id AND {_COMPLETE} AND m.name = :model)"
            )
        sql = f"SELECT count(*) AS n FROM concept co{_where(clauses)}"
    elif what == "models":
        clauses, params = _filters(None, None, None, search, ("m.name", "m.architecture", "m.id"))
        sql = f"SELECT count(*) AS n FROM model m{_where(clauses)}"
    else:
        raise CircuitsError(f"cannot count {what!r}: use models, concepts, runs or circuits")
    if after is not None:
        sql += (" AND " if clauses else " WHERE ") + _AFTER[what]
        params["after"] = after
    return int(query_arrow(session, sql, params).to_pylist()[0]["n"])
