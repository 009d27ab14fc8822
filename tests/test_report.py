"""`circuits report`: one self-contained HTML file that opens in Chromium with networking off."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from test_serve_support import Browser, demo_catalog
from typer.testing import CliRunner

from circuits.cli.main import app

ARTIFACTS = Path(os.environ.get("CIRCUITS_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "circuits-test-artifacts")
runner = CliRunner()


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    return demo_catalog(tmp_path_factory)


@pytest.fixture(scope="module")
def report(web, tmp_path_factory):
    cid = web["circuits"][1]  # stripes_star: it has an intervention with evaluations
    out = tmp_path_factory.mktemp("report") / "page.html"
    r = runner.invoke(app, ["report", str(cid), "-o", str(out), "--db", str(web["path"])])
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.output and f"circuit {cid}" in r.output
    return cid, out


def test_report_is_self_contained(report):
    _, out = report
    html = out.read_text()
    assert "<svg" in html and "<style>" in html
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html)  # nothing fetched from anywhere
    assert "/static/" not in html and 'src="/' not in html
    assert html.count("data:image/webp;base64,") >= 4
    assert "random baseline" in html and "circuits export" in html


def test_report_opens_offline_in_chromium_and_shows_the_graph(web, report):
    cid, out = report
    browser = Browser(offline=True)
    try:
        browser.goto(out.as_uri())
        assert browser.errors() == []
        per_layer = browser.evaluate(
            "Object.fromEntries([...new Set([...document.querySelectorAll('svg.circuit-graph circle.neuron')]"
            ".map(c => c.dataset.layer))].map(l => [l, document.querySelectorAll("
            '`svg.circuit-graph circle.neuron[data-layer="${l}"]`).length]))'
        )
        assert per_layer == web["sizes"][cid]
        box = browser.evaluate(
            "(r => [r.width, r.height])(document.querySelector('svg.circuit-graph').getBoundingClientRect())"
        )
        assert box[0] > 300 and box[1] > 100  # drawn, not collapsed
        images = browser.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth])")
        assert len(images) == 2 * 4 * sum(web["sizes"][cid].values())  # 4 patches and 4 heat-maps per neuron
        assert all(done and width > 0 for done, width in images)
        assert all(url.startswith(("file:", "data:")) for url in browser.requested_urls())
        assert browser.evaluate("document.querySelectorAll('table.evaluations tr').length") > 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert browser.screenshot(ARTIFACTS / "report.png").stat().st_size > 10_000
    finally:
        browser.close()


def test_report_of_a_concept_name_and_of_a_missing_circuit(web, tmp_path):
    out = tmp_path / "star.html"
    r = runner.invoke(app, ["report", "star", "-o", str(out), "--db", str(web["path"]), "--quiet"])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == str(out) and "star" in out.read_text()
    r = runner.invoke(app, ["report", "999", "-o", str(tmp_path / "x.html"), "--db", str(web["path"])])
    assert r.exit_code == 1 and "error: no circuit 999" in r.output
    assert not (tmp_path / "x.html").exists()
