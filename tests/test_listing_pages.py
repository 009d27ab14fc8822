"""Keyset pages of the listings (`queries.listing_pages`), `circuits list --limit/--after` and the web
home page's sections: every page reads a bounded number of rows, in a stable order, with counts.
Both backends; one catalog per module."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers_catalog import write_circuit, write_run
from typer.testing import CliRunner

import queries.listing as listing
from catalog import store
from catalog.engine import close_catalogs_of, open_catalog
from catalog.errors import CircuitsError
from circuits.cli.main import app
from circuits.web.home import home_cursors, home_view
from circuits.web.pages import Pages
from queries.listing_pages import list_page

runner = CliRunner()
LAYERS = [("l0", 4), ("l1", 6)]
CONCEPTS = ["wave", "star", "dot", "a_b", "a%b"]  # not in name order; `_` and `%` are LIKE wildcards


@pytest.fixture(scope="module")
def db(module_db_url):
    """Two models; five concepts; a run per (model, concept) but dot on `other`; two circuits per
    run; two example images per run."""
    cat = open_catalog(module_db_url, create=True)
    rng = np.random.default_rng(0)
    with cat.session() as s, s.begin():
        for m, name in enumerate(["toy", "other"]):
            model = store.ensure_model(s, name=name, architecture="cnn", weights_sha256=f"{m}" * 64, layers=LAYERS)
            for i, concept in enumerate(CONCEPTS):
                if name == "other" and concept == "dot":
                    continue
                key = f"{m}{i}".ljust(64, "0")
                concept_id = store.ensure_concept(s, concept)
                store.write_example_images(
                    s, concept_id, key, [(f"{key[:2]}{n}".ljust(64, "f"), f"{n}.png") for n in range(2)]
                )
                run = write_run(s, model, concept_id, [rng.random((4, 6), dtype=np.float32)], key, image_set_sha256=key)
                for j in range(2):
                    write_circuit(s, run, [[j], [j, j + 1]])
    cat.close()
    yield module_db_url
    close_catalogs_of(module_db_url)


def _pages(s, what, limit, **filters):
    pages, after = [], None
    while True:
        page = list_page(s, what, after=after, limit=limit, **filters)
        pages.append(page)
        if page.next_after is None:
            return pages
        after = page.next_after


@pytest.mark.parametrize("what", ["models", "concepts", "runs", "circuits"])
def test_pages_walk_the_whole_listing_in_order_with_counts(db, what):
    cat = open_catalog(db, read_only=True)
    with cat.session() as s:
        full = getattr(listing, f"list_{what}")(s)
        n = 1 if what == "models" else 3
        pages = _pages(s, what, n)
    assert [r for p in pages for r in p.rows] == full  # same rows, same order, same per-row counts
    assert all(p.total == len(full) for p in pages) and [p.start for p in pages] == list(range(0, len(full), n))
    assert all(len(p.rows) == n for p in pages[:-1]) and 1 <= len(pages[-1].rows) <= n and len(pages) > 1
    assert pages[0].summary() == f"{what} 1–{n} of {len(full)}; next page: `after=` {pages[0].rows[-1].id}"
    assert pages[-1].summary().endswith(f"of {len(full)}")


def test_filters_search_and_cursor_errors(db):
    cat = open_catalog(db, read_only=True)
    with cat.session() as s:
        assert [c.name for c in list_page(s, "concepts").rows] == sorted(CONCEPTS)
        on_other = list_page(s, "concepts", model="other")
        assert [c.name for c in on_other.rows] == sorted(set(CONCEPTS) - {"dot"}) and on_other.total == 4
        assert all(c.runs == 1 and c.circuits == 2 for c in on_other.rows)  # counts on that model only
        star = list_page(s, "circuits", model="toy", concept="star")
        assert star.total == 2 and {c.concept for c in star.rows} == {"star"}
        # search is a case-insensitive substring; LIKE wildcards are matched literally
        assert [c.name for c in list_page(s, "concepts", search="A_B").rows] == ["a_b"]
        assert [c.name for c in list_page(s, "concepts", search="%").rows] == ["a%b"]
        assert list_page(s, "runs", search="OTHER").total == 4 == list_page(s, "runs", model="other").total
        assert list_page(s, "runs", status="failed").total == 0
        with pytest.raises(CircuitsError, match="positive integer"):
            list_page(s, "runs", limit=0)
        with pytest.raises(CircuitsError, match="cannot list"):
            list_page(s, "edges")
        # the window's keywords are checked as a signature's are: a misspelt one is not ignored
        with pytest.raises(TypeError, match="list_runs.. got an unexpected keyword argument 'limt'"):
            listing.list_runs(s, limt=2)
        with pytest.raises(TypeError, match="'modle'"):
            list_page(s, "runs", modle="toy")
        with pytest.raises(CircuitsError, match="search must be text"):
            listing.list_models(s, search=3)


def test_cli_list_prints_a_page_and_the_next_cursor(db):
    first = runner.invoke(app, ["list", "circuits", "--limit", "4", "--db", db, "-f", "json"])
    assert first.exit_code == 0, first.output
    import json

    rows = json.loads(first.stdout)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows) and len(rows) == 4
    assert f"note: circuits 1–4 of 18; next page: --after {rows[-1]['id']}" in first.stderr
    rest = runner.invoke(app, ["list", "circuits", "--after", str(rows[-1]["id"]), "--db", db])
    assert rest.exit_code == 0 and "note: circuits 5–18 of 18" in rest.stdout and "next page" not in rest.stdout


def test_home_sections_are_pages_with_links(db):
    cat = open_catalog(db, read_only=True)
    with cat.session() as s:
        view = home_view(s, limit=4)
        assert [len(view.pages[k].rows) for k in ("models", "concepts", "circuits", "runs", "image_sets")] == [
            2,
            4,
            4,
            4,
            4,
        ]
        assert view.summary("circuits") == "1–4 of 18" and view.first_href("circuits") is None
        nxt = view.next_href("circuits")
        assert nxt == f"/?circuits_after={view.circuits[-1].id}#circuits"
        cursors = home_cursors({"circuits_after": [str(view.circuits[-1].id)], "q": [""]})
        second = home_view(s, cursors=cursors, limit=4)
        assert second.summary("circuits") == "5–8 of 18" and second.circuits[0].id > view.circuits[-1].id
        assert second.first_href("circuits") == "/#circuits"
        sets = home_view(s, cursors={"image_sets_after": view.image_sets[-1].id}, limit=4)
        assert sets.image_sets[0].id > view.image_sets[-1].id and sets.summary("image_sets") == "5–8 of 9"
        searched = home_view(s, "STAR", limit=4)
        assert {c.concept for c in searched.circuits} == {"star"} and searched.pages["circuits"].total == 4
        assert searched.next_href("circuits") is None and searched.href("runs", 3) == "/?q=STAR&runs_after=3#runs"
        with pytest.raises(CircuitsError, match="must be a row id"):
            home_view(s, cursors={"runs_after": "x"})
        html = Pages("c.duckdb").home(second)
        assert "5–8 of 18" in html and f'href="/?circuits_after={second.circuits[-1].id}#circuits">next page' in html
        assert 'href="/#circuits">first page' in html and html.count("next page") == 4  # all but models (2 rows)
