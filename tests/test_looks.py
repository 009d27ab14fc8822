"""The circuit page read at a glance, in headless Chromium: the graph's legend, class names on
logit nodes, hover scores and the edge table, the edge filter (query parameter with JavaScript
off, slider with it on, a non-numeric threshold), label boxes that never overlap, interventions
as one chart and one table, the SQL page's schema list, model/concept pages and descriptions.

Screenshots of each page kind go to $CIRCUITS_TEST_ARTIFACTS (default: a temp folder).
"""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from pathlib import Path

import pytest
from test_serve_support import Browser, ServerThread

ARTIFACTS = Path(os.environ.get("CIRCUITS_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "circuits-test-artifacts")
CLASS = "stripes_star"


@pytest.fixture(scope="module")
def looks(tmp_path_factory):
    """A catfish-mini class circuit anchored at its logit (fc) with an ablation; a described concept."""
    from catalog import store
    from catalog.engine import close_catalogs_of, open_catalog
    from ingest.ablation import ablate
    from ingest.datasets.catfish import CLASS_NAMES
    from ingest.image_sets import resolve_images
    from ingest.pipeline import IngestConfig, ingest_concept
    from ingest.refinement import refine

    path = tmp_path_factory.mktemp("looks") / "looks.duckdb"
    cat = open_catalog(path, create=True)
    images = resolve_images(dataset=f"catfish:{CLASS}", n=8, seed=0)
    layers = ("mixed3a", "mixed3b", "mixed4a", "mixed4b", "fc")
    result = ingest_concept(cat, IngestConfig("catfish-mini", CLASS, layers=layers, k=3, device="cpu"), images)
    anchored, _ = refine(cat, result.run_id, (3, 3, 3, 3, 1), fixed={"fc": [CLASS_NAMES.index(CLASS)]})
    ablate(cat, anchored, resolve_images(dataset=f"catfish:{CLASS}", n=8, seed=1), device="cpu")
    ablate(cat, anchored, resolve_images(dataset=f"catfish:{CLASS}", n=8, seed=1), kind="edge", device="cpu")
    with cat.session() as s, s.begin():
        store.describe_concept(s, CLASS, "stripes and a star, drawn on clutter")
    from ingest.featurevis import FeatureVisConfig, recompute_run_featurevis
    from ingest.run_media import load_run_model

    run_model = load_run_model(cat, result.run_id, "catfish-mini")  # after `refine`: its circuit too
    recompute_run_featurevis(cat, run_model, config=FeatureVisConfig(steps=3))  # looks only
    from ingest.reference import reference_set, store_reference_patches

    store_reference_patches(cat, run_model, reference_set("catfish-mini", per_class=2))
    close_catalogs_of(path)
    with ServerThread(path) as server:
        yield {"path": path, "url": server.url, "anchored": anchored, "plain": result.circuit_id}


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


def _shot(browser: Browser, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.screenshot(ARTIFACTS / name)


EDGES = "document.querySelectorAll('svg.circuit-graph g.edge').length"
VISIBLE_EDGES = "[...document.querySelectorAll('svg.circuit-graph g.edge')].filter(g => g.getBBox().width > 0 && getComputedStyle(g).display !== 'none').length"
SCORES = "[...document.querySelectorAll('#edge-table tr.edge-row')].map(r => parseFloat(r.dataset.score))"
LABEL_BOXES = (
    "[...document.querySelectorAll('svg.circuit-graph text.channel, svg.circuit-graph text.layer-name, "
    "svg.circuit-graph text.layer-k, svg.circuit-graph .legend text')].map(t => {const b = t.getBoundingClientRect();"
    " return [t.textContent, b.left, b.top, b.right, b.bottom];})"
)


def _overlaps(boxes):
    bad = []
    for i, (ta, *a) in enumerate(boxes):
        for tb, *b in boxes[i + 1 :]:
            if a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5:
                bad.append((ta, tb))
    return bad


def test_graph_legend_class_names_anchoring_and_labels(looks, browser):
    browser.goto(f"{looks['url']}/circuit/{looks['anchored']}")
    assert browser.errors() == []
    legend = browser.evaluate("document.querySelector('svg.circuit-graph .legend').textContent")
    assert "edge score" in legend and "circuit neuron" in legend and "anchored" in legend
    top = browser.evaluate(
        "Math.max(...[...document.querySelectorAll('#edge-table tr.edge-row')].map(r => +r.dataset.score))"
    )
    ticks = browser.evaluate(
        "[...document.querySelectorAll('svg.circuit-graph .legend text.legend-tick')].map(t => t.textContent)"
    )
    assert f"{top:.4g}" in ticks  # the scale ends at the circuit's top score
    strokes = browser.evaluate(
        "[...document.querySelectorAll('svg.circuit-graph g.edge')].sort((a, b) => b.dataset.score - a.dataset.score)"
        ".map(g => getComputedStyle(g.querySelector('line')).stroke)"
    )
    assert strokes[0] == "rgb(8, 48, 107)" and strokes[-1] != strokes[0]  # drawn in the legend's colours
    fc = browser.evaluate(
        "[...document.querySelectorAll('svg.circuit-graph text.channel')].map(t => t.textContent)"
        ".filter(t => t.includes('_'))"
    )
    assert any(t.endswith(CLASS) for t in fc), fc  # the anchored logit is named by its class
    assert browser.evaluate("document.querySelectorAll('svg.circuit-graph circle.neuron.anchored').length") == 1
    assert "anchored at fc" in browser.evaluate("document.querySelector('h1').textContent")
    assert "stripes and a star" in browser.evaluate("document.querySelector('main p.muted').textContent")
    boxes = browser.evaluate(LABEL_BOXES)
    assert len(boxes) > 20 and _overlaps(boxes) == []
    # every edge has its score at hover (title and a hover label) and a row in the edge table
    n = browser.evaluate(EDGES)
    assert n == len(browser.evaluate(SCORES)) > 0
    assert browser.evaluate(
        "[...document.querySelectorAll('g.edge')].every(g => g.querySelector('title').textContent.includes('score') && g.querySelector('text.edge-score'))"
    )
    # each circuit neuron: its feature visualisation, patches and where it fires (loaded images)
    cards = browser.evaluate(
        "[...document.querySelectorAll('.neuron-card')].map(c => [c.querySelectorAll('figure.featurevis img').length,"
        " c.querySelectorAll('.patches img:not(.heatmap):not(.reference)').length,"
        " c.querySelectorAll('img.heatmap').length, c.querySelectorAll('img.reference').length])"
    )
    assert len(cards) == 13 and all(fv == 1 and r == 4 for fv, _, _, r in cards)
    assert sum(1 for _, p, h, _ in cards if p == 4 and h == 4) >= 12  # the fc logit has no spatial map
    tops = browser.evaluate(
        "[...document.querySelectorAll('.neuron-card')].map(c => [...c.querySelectorAll('img.reference')]"
        ".map(i => i.title.split(',')[0]).join('|'))"
    )
    assert len(set(tops)) >= 8  # the reference set tells the circuit's neurons apart
    assert browser.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    # the graph fills the page's width
    width = browser.evaluate("document.querySelector('svg.circuit-graph').getBoundingClientRect().width")
    main = browser.evaluate("document.querySelector('#graph').clientWidth")
    assert width >= 0.9 * main - 20
    _shot(browser, "looks-circuit.png")


def test_edge_filter_by_query_slider_and_bad_threshold(looks, browser):
    url = f"{looks['url']}/circuit/{looks['anchored']}"
    browser.goto(url)
    scores = sorted(browser.evaluate(SCORES))
    threshold = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2  # between two scores
    expect = sum(1 for s in scores if s >= threshold)
    assert 0 < expect < len(scores)
    # slider (JavaScript on): hides edges and rows below, counts what is left
    browser.evaluate(
        "(() => {const r = document.querySelector('form.edge-filter input[type=range]');"
        f"r.value = {threshold!r}; r.dispatchEvent(new Event('input')); return r.value;}})()"
    )
    assert browser.evaluate(VISIBLE_EDGES) == expect
    assert (
        browser.evaluate("[...document.querySelectorAll('#edge-table tr.edge-row')].filter(r => r.offsetParent).length")
        == expect
    )
    assert f"{expect} of {len(scores)}" in browser.evaluate("document.getElementById('edge-count').textContent")
    assert browser.errors() == []
    _shot(browser, "looks-circuit-slider.png")
    # query parameter (JavaScript off): the server leaves the weak edges out
    with Browser(javascript=False) as nojs:
        nojs.goto(url + "?min_score=" + urllib.parse.quote(repr(threshold)))
        assert nojs.evaluate(EDGES) == expect
        assert len(nojs.evaluate(SCORES)) == expect
        assert nojs.evaluate("document.querySelector('form.edge-filter input[type=range]').hidden") is True
        _shot(nojs, "looks-circuit-filtered-nojs.png")
        nojs.goto(url + "?min_score=lots")
        assert nojs.evaluate(EDGES) == len(scores)  # unfiltered, with a note
        assert "not a number" in nojs.evaluate("document.getElementById('score-note').textContent")


def test_interventions_as_one_chart_and_one_table(looks, browser):
    browser.goto(f"{looks['url']}/circuit/{looks['anchored']}")
    assert browser.evaluate("document.querySelectorAll('svg.interventions-chart').length") == 1
    bars = browser.evaluate(
        "['clean','pruned','random'].map(k => document.querySelectorAll('svg.interventions-chart rect.bar-' + k).length)"
    )
    rows = browser.evaluate("document.querySelectorAll('#interventions tr').length") - 1
    assert rows >= 6 and bars == [rows, rows, rows]  # circuit and edge pruning, 3+ metrics each
    assert browser.evaluate("document.querySelectorAll('h3').length") == 0  # no table per intervention
    assert browser.evaluate("document.querySelector('details.params').open") is False
    assert '"kind"' not in browser.evaluate("document.querySelector('#interventions').textContent")
    browser.evaluate("document.querySelector('#interventions-chart').scrollIntoView()")
    _shot(browser, "looks-interventions.png")


def test_neuron_page_shows_its_picture_and_where_it_fires(looks, browser):
    browser.goto(f"{looks['url']}/circuit/{looks['anchored']}")
    href = browser.evaluate("document.querySelector('.neuron-card a.id').getAttribute('href')")
    browser.goto(looks["url"] + href)
    assert browser.errors() == []
    assert browser.evaluate("document.querySelectorAll('.featurevis-row img').length") == 1
    assert browser.evaluate("document.querySelectorAll('img.heatmap').length") == 8  # concept and reference
    assert browser.evaluate("document.querySelectorAll('#reference img.reference').length") == 4
    assert browser.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert browser.evaluate("document.querySelector('a.permalink').getAttribute('href')") == href
    _shot(browser, "looks-neuron.png")
    browser.goto(f"{looks['url']}/neuron/catfish-mini/fc:2")
    assert browser.evaluate("document.querySelector('h1 .class-name').textContent") == CLASS


def test_home_compare_and_image_set_pages(looks, browser):
    browser.goto(looks["url"] + "/")
    assert browser.errors() == []
    _shot(browser, "looks-home.png")
    browser.goto(f"{looks['url']}/compare?c={looks['plain']},{looks['anchored']}")
    assert browser.errors() == []
    assert browser.evaluate("document.querySelectorAll('svg.circuit-graph').length") == 2
    _shot(browser, "looks-compare.png")
    browser.goto(looks["url"] + "/")
    href = browser.evaluate("document.querySelector('#image-sets a').getAttribute('href')")
    browser.goto(looks["url"] + href)
    assert browser.errors() == [] and browser.evaluate("document.querySelectorAll('.thumbs img').length") > 0
    _shot(browser, "looks-images.png")


def test_sql_page_lists_tables_and_views(looks, browser):
    browser.goto(f"{looks['url']}/sql")
    assert browser.errors() == []
    listed = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#sql-schema > div')].map(d => [d.id.slice(7), d.className]))"
    )
    assert listed.get("edge") == "table" and listed.get("circuit_neurons_v") == "view"
    cols = browser.evaluate("document.getElementById('schema-circuit').textContent")
    assert "objective" in cols and "fixed" in cols
    _shot(browser, "looks-sql.png")


def test_model_and_concept_pages_have_stable_urls(looks, browser):
    browser.goto(f"{looks['url']}/concept/{CLASS}")
    assert browser.errors() == []
    assert "stripes and a star" in browser.evaluate("document.querySelector('#concepts td.description').textContent")
    circuits = browser.evaluate("[...document.querySelectorAll('#circuits a.circuit-link')].map(a => a.textContent)")
    assert sorted(circuits) == sorted([str(looks["plain"]), str(looks["anchored"])])
    assert browser.evaluate("document.querySelectorAll('#circuits .badge.anchored').length") == 1
    browser.goto(f"{looks['url']}/model/catfish-mini")
    assert browser.evaluate("document.querySelectorAll('#models tr').length") == 2
    _shot(browser, "looks-model.png")
    browser.goto(f"{looks['url']}/concept/nope")
    assert browser.evaluate("document.title").startswith("404")


def test_report_draws_the_same_graph_with_its_slider(looks, tmp_path):
    from catalog.engine import open_catalog
    from circuits.web.pages import report_html

    cat = open_catalog(looks["path"], read_only=True)
    try:
        _, html = report_html(cat, looks["anchored"])
    finally:
        cat.close()
    page = tmp_path / "r.html"
    page.write_text(html)
    b = Browser(offline=True)
    try:
        b.goto(page.as_uri())
        assert b.errors() == []
        assert b.evaluate("document.querySelectorAll('svg.circuit-graph .legend').length") == 1
        n = b.evaluate(EDGES)
        b.evaluate(
            "(() => {const r = document.querySelector('form.edge-filter input[type=range]');"
            "r.value = r.max; r.dispatchEvent(new Event('input'));})()"
        )
        assert b.evaluate(VISIBLE_EDGES) == 1 < n  # only the top edge is left
        _shot(b, "looks-report.png")
    finally:
        b.close()


def test_concept_describe_cli(looks, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from circuits.cli.main import app

    db = tmp_path / "c.duckdb"
    shutil.copy(looks["path"], db)
    r = CliRunner().invoke(app, ["concept", "describe", CLASS, "the class with stripes", "--db", str(db)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["concept", "describe", "nope", "x", "--db", str(db)])
    assert r.exit_code == 1 and r.output.strip().startswith("error:") and "nope" in r.output
    from catalog.engine import open_catalog
    from queries.listing import list_concepts

    cat = open_catalog(db, read_only=True)
    try:
        with cat.session() as s:
            assert {c.name: c.description for c in list_concepts(s)}[CLASS] == "the class with stripes"
    finally:
        cat.close()


def test_the_one_script_is_served_by_the_server_and_the_policy_allows_nothing_else(looks):
    import urllib.request

    with urllib.request.urlopen(f"{looks['url']}/circuit/{looks['anchored']}", timeout=30) as r:
        csp = r.headers["Content-Security-Policy"]
        html = r.read().decode()
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp.split("script-src", 1)[1].split(";")[0]
    assert "default-src 'none'" in csp
    assert '<script src="/static/graph.js"></script>' in html and html.count("<script") == 1
    with urllib.request.urlopen(f"{looks['url']}/static/graph.js", timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/javascript") and b"edge-filter" in r.read()


def test_a_10_by_10_circuit_fills_the_width_with_no_overlapping_labels(tmp_path):
    """The largest graph the layout promises (10 layers × 10 neurons, long layer names, class
    names on the last layer), drawn in Chromium at the page's width."""
    from types import SimpleNamespace

    from circuits.web.data import Node
    from circuits.web.graph import circuit_svg
    from circuits.web.pages import stylesheet

    layers = [f"features.block{i}.conv_{i}_long_name" for i in range(9)] + ["classifier"]
    nodes, edges = [], []
    for i, layer in enumerate(layers):
        for j in range(10):
            label = f"class name number {j}" if layer == "classifier" else None
            nodes.append(Node(layer, i, 100 + 37 * j, 1000 * i + j, float(10 - j), True, label))
    for i in range(9):
        for a in range(10):
            for b in range(10):
                edges.append((1000 * i + a, 1000 * (i + 1) + b, float((a * 7 + b * 3) % 11) + 0.5))
    circuit = SimpleNamespace(id=7, layer_names=tuple(layers), fixed={"classifier": [100]})
    view = SimpleNamespace(
        details=SimpleNamespace(circuit=circuit, run=SimpleNamespace(concept="big")),
        model="m",
        nodes=tuple(nodes),
        edges=tuple(edges),
    )
    svg = circuit_svg(view, lambda n: "#")  # type: ignore[arg-type]
    page = tmp_path / "big.html"
    page.write_text(
        f'<!doctype html><style>{stylesheet()}</style><main><div class="graph-wrap" id="graph">{svg}</div></main>'
    )
    b = Browser(offline=True)
    try:
        b.goto(page.as_uri())
        width = b.evaluate("document.querySelector('svg.circuit-graph').getBoundingClientRect().width")
        room = b.evaluate("document.querySelector('#graph').clientWidth")
        assert width >= 0.9 * room - 20 and width <= room
        assert b.evaluate("document.querySelectorAll('svg.circuit-graph circle.neuron').length") == 100
        boxes = b.evaluate(LABEL_BOXES)
        assert _overlaps(boxes) == []
        right = b.evaluate("document.querySelector('svg.circuit-graph').getBoundingClientRect().right")
        assert max(box[3] for box in boxes) <= right  # no label is cut off at the edge
        _shot(b, "looks-graph-10x10.png")
    finally:
        b.close()
