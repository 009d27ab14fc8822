"""The SQL the listings share (`queries.listing`, `queries.listing_pages`): each listing's FROM
clause, the filters it takes, what its search box matches and its keyset cursor, and the checks
of those arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from catalog._keywords import check_keywords
from catalog.errors import CircuitsError
from catalog.vocab import RunStatus
from queries.resolve import COMPLETE_RUN


def check_status(status: str | None) -> None:
    """Raises CircuitsError unless `status` is None or a run status."""
    if status is not None and status not in set(RunStatus):
        raise CircuitsError(f"unknown run status {status!r}: use one of {', '.join(RunStatus)}")


def check_page(after: int | None, limit: int | None) -> None:
    """Raises CircuitsError unless `after` is None or a row id and `limit` None or at least 1."""
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise CircuitsError(f"a page holds at least 1 row: limit must be a positive integer, got {limit!r}")
    if after is not None and not isinstance(after, int):
        raise CircuitsError(f"after must be a row id (an integer), got {after!r}")


class Window(TypedDict, total=False):
    """Which rows of a listing: the keyword arguments every listing takes after its filters.

    Keys:
        search: keep rows where any of the listing's search fields (its name, id, ...) contains
            this text, in any case.
        after: keyset cursor: start after the row with this id, in the listing's order.
        limit: at most this many rows (None: all); per-row counts are computed for these rows only.
    """

    search: str | None
    after: int | None
    limit: int | None


def window_of(function: str, window: Window) -> tuple[str | None, int | None, int | None]:
    """`window`'s (search, after, limit), checked.

    Raises:
        TypeError: a keyword `function` does not take (as Python says of any other function).
        CircuitsError: as `check_page`.
    """
    check_keywords(f"{function}()", window, Window)
    search, after, limit = window.get("search"), window.get("after"), window.get("limit")
    if search is not None and not isinstance(search, str):
        raise CircuitsError(f"search must be text, got {search!r}")
    check_page(after, limit)
    return search, after, limit


@dataclass(frozen=True)
class Source:
    """What a listing reads: its FROM clause, the filters it takes (name -> clause, each binding
    `:name`), the SQL expressions `search` matches, and its keyset cursor ("after the row with id
    :after" in the listing's order)."""

    tables: str
    exact: dict[str, str]
    search: tuple[str, ...]
    after: str


_RUN_FILTERS = {"model": "m.name = :model", "concept": "co.name = :concept", "status": "r.status = :status"}
SOURCES = {
    "models": Source(
        "FROM model m",
        {},
        ("m.name", "m.architecture", "m.id"),
        "(m.name > (SELECT name FROM model WHERE id = :after) OR "
        "(m.name = (SELECT name FROM model WHERE id = :after) AND m.id > :after))",
    ),
    "concepts": Source(
        "FROM concept co",
        {  # a concept is on a model when it has a complete run on it
            "model": "EXISTS (SELECT 1 FROM run r JOIN model m ON m.id = r.model_id "
            f"WHERE r.concept_id = co.id AND {COMPLETE_RUN} AND m.name = :model)"
        },
        ("co.name", "coalesce(co.description, '')", "co.id"),
        "co.name > (SELECT name FROM concept WHERE id = :after)",  # names are unique
    ),
    "runs": Source(
        "FROM run r JOIN model m ON m.id = r.model_id JOIN concept co ON co.id = r.concept_id",
        _RUN_FILTERS,
        ("m.name", "co.name", "r.id", "r.status"),
        "r.id > :after",
    ),
    "circuits": Source(
        "FROM circuit c JOIN run r ON r.id = c.run_id JOIN model m ON m.id = r.model_id "
        "JOIN concept co ON co.id = r.concept_id",
        _RUN_FILTERS,
        ("m.name", "co.name", "c.id"),
        "c.id > :after",
    ),
}


def filters(what: str, search: str | None, after: int | None, **exact: str | None) -> tuple[str, dict[str, object]]:
    """The WHERE clause ('' without one) of listing `what` and its parameters: the `exact` filters
    (model, concept, status: None for any) that the listing takes, the others ignored; `search` as
    a case-insensitive substring of any of its search expressions (as the web page's search box
    does); and the keyset cursor `after`.

    Raises:
        CircuitsError: an unknown run status.
    """
    check_status(exact.get("status"))
    source = SOURCES[what]
    model = exact.get("model")
    if model is not None:  # `name@prefix` (of its weights sha256) lists every model of that name
        exact["model"] = model.partition("@")[0]
    params: dict[str, object] = {k: v for k, v in exact.items() if v is not None and k in source.exact}
    clauses = [source.exact[k] for k in params]
    if search and search.strip():
        escaped = search.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["search"] = f"%{escaped}%"
        likes = [f"lower(CAST({f} AS VARCHAR)) LIKE :search ESCAPE '\\'" for f in source.search]
        clauses.append("(" + " OR ".join(likes) + ")")
    if after is not None:
        clauses.append(source.after)
        params["after"] = after
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def limit_clause(limit: int | None) -> str:
    """` LIMIT n`, or '' for no limit."""
    return "" if limit is None else f" LIMIT {int(limit)}"
