"""`circuits serve` in a real headless Chromium: home page, a circuit's graph and thumbnails, the
neuron and compare pages, the SQL box refusing writes; plus the loopback-only binding rule."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from test_serve_support import Browser, ServerThread, demo_catalog

ARTIFACTS = Path(os.environ.get("CIRCUITS_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "circuits-test-artifacts")
"""Where the screenshots go (look at them: serve-circuit.png, serve-compare.png, report.png)."""


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    from catalog.engine import close_catalogs_of

    info = demo_catalog(tmp_path_factory)
    close_catalogs_of(info["path"])  # another module's reader of the shared catalog: the server opens it sandboxed
    with ServerThread(info["path"]) as server:
        yield {**info, "url": server.url}


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


def test_home_then_circuit_page_in_chromium(web, browser):
    browser.goto(web["url"] + "/")
    assert browser.errors() == []
    assert browser.evaluate("document.querySelectorAll('#circuits a.circuit-link').length") == 2
    assert browser.evaluate("document.querySelectorAll('#models tr').length") == 2  # header + catfish-mini

    cid = web["circuits"][0]
    browser.click(f'#circuits a.circuit-link[href="/circuit/{cid}"]')
    assert browser.evaluate("location.pathname") == f"/circuit/{cid}"
    per_layer = browser.evaluate(
        "Object.fromEntries([...new Set([...document.querySelectorAll('svg.circuit-graph circle.neuron')]"
        ".map(c => c.dataset.layer))].map(l => [l, document.querySelectorAll("
        '`svg.circuit-graph circle.neuron[data-layer="${l}"]`).length]))'
    )
    assert per_layer == web["sizes"][cid]  # star: k = 2,3,3,2,2
    assert browser.evaluate("document.querySelectorAll('svg.circuit-graph circle.neuron-faded').length") > 0
    tips = browser.evaluate(
        "[...document.querySelectorAll('svg.circuit-graph line.edge title')].map(t => t.textContent)"
    )
    assert tips and all("score" in t for t in tips)
    ids = browser.evaluate("[...document.querySelectorAll('.neuron-card a.id')].map(a => a.textContent)")
    assert len(ids) == sum(web["sizes"][cid].values()) and all(i.startswith("catfish-mini/") for i in ids)
    assert "circuits export" in browser.evaluate("document.querySelector('pre.cmd').textContent")

    images = browser.evaluate(
        "[...document.querySelectorAll('.patches img:not(.heatmap)')].map(i => [i.src, i.complete, i.naturalWidth])"
    )
    assert len(images) == 4 * sum(web["sizes"][cid].values())  # top 4 patches per circuit neuron
    assert all(done and width > 0 for _, done, width in images)
    heat = browser.evaluate("[...document.querySelectorAll('img.heatmap')].map(i => [i.complete, i.naturalWidth])")
    assert len(heat) == len(images) and all(done and width > 0 for done, width in heat)  # where each fires
    pngs = [r for r in browser.responses() if "/patch/" in r.url]
    assert {r.url for r in pngs} == {src for src, _, _ in images}
    for r in pngs:
        assert r.status == 200 and r.headers["content-type"] == "image/webp"  # what ingest stores (catalog.media)
        body = r.body()
        assert body[:4] == b"RIFF" and body[8:12] == b"WEBP" and len(body) > 50
    assert browser.errors() == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = browser.screenshot(ARTIFACTS / "serve-circuit.png")
    assert shot.stat().st_size > 10_000


def test_neuron_compare_and_image_set_pages(web, browser):
    cid = web["circuits"][0]
    browser.goto(f"{web['url']}/circuit/{cid}")
    first = browser.evaluate("document.querySelector('.neuron-card a.id').getAttribute('href')")
    browser.goto(web["url"] + first)
    assert browser.errors() == []
    assert browser.evaluate("document.querySelectorAll('#memberships tr').length") >= 2  # header + ≥1 circuit
    assert browser.evaluate("document.querySelectorAll('.patches img').length") >= 4
    assert browser.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")

    a, b = web["circuits"]
    browser.goto(f"{web['url']}/compare?c={a}&c={b}")
    assert browser.errors() == []
    assert browser.evaluate("document.querySelectorAll('svg.circuit-graph').length") == 2
    assert browser.evaluate("document.querySelectorAll('svg.heatmap rect.cell').length") == 4
    shared = browser.evaluate("document.querySelectorAll('svg.circuit-graph circle.neuron.shared').length")
    assert shared > 0  # both circuits contain, e.g., the star detectors
    browser.screenshot(ARTIFACTS / "serve-compare.png")

    browser.goto(web["url"] + "/")
    href = browser.evaluate("document.querySelector('#image-sets a').getAttribute('href')")
    browser.goto(web["url"] + href)
    assert browser.errors() == []
    thumbs = browser.evaluate("[...document.querySelectorAll('.thumbs img')].map(i => i.naturalWidth)")
    assert len(thumbs) == 8 and all(w > 0 for w in thumbs)


def test_sql_box_refuses_a_write_and_runs_the_examples(web, browser):
    browser.goto(web["url"] + "/sql")
    browser.evaluate("document.querySelector('#sql-query').value = 'delete from run'")
    browser.click("#sql-form button[type=submit]")
    assert browser.evaluate("location.search").startswith("?q=delete")
    error = browser.evaluate("document.querySelector('#sql-error') && document.querySelector('#sql-error').textContent")
    assert error and "read-only" in error
    status, body, _ = _get(web["url"] + "/sql?q=" + urllib.parse.quote("select count(*) as n from run"))
    assert status == 200 and b"<td>2</td>" in body  # nothing was deleted

    from circuits.web.examples import EXAMPLES

    for title, query in EXAMPLES:
        status, body, _ = _get(web["url"] + "/sql?q=" + urllib.parse.quote(query))
        assert status == 200 and b'id="sql-error"' not in body, (title, body[-800:])


def test_documented_questions_are_the_sql_box_examples():
    import re

    from circuits.web.examples import EXAMPLES

    questions = (Path(__file__).resolve().parent.parent / "docs" / "questions.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", questions, re.S)
    titles = re.findall(r"\n([^\n`]+):\n\n```sql", questions)
    assert [q for _, q in EXAMPLES] == blocks
    assert [t for t, _ in EXAMPLES] == titles


def test_errors_are_pages_not_tracebacks(web):
    assert _get(web["url"] + "/circuit/999")[0] == 404
    assert _get(web["url"] + "/circuit/x")[0] == 404
    assert _get(web["url"] + "/neuron/nomodel/stem:1")[0] == 404
    assert _get(web["url"] + "/compare?c=1")[0] == 400
    status, body, kind = _get(web["url"] + "/patch/1/1/99.png")
    assert status == 404 and kind.startswith("text/html")
    req = urllib.request.Request(web["url"] + "/sql", data=b"q=delete+from+run", method="POST")
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("POST accepted")
    except urllib.error.HTTPError as err:
        assert err.code == 405
    status, body, _ = _get(web["url"] + "/?q=stripes")
    assert status == 200 and b"stripes_star" in body and b">star</a>" not in body


def test_non_loopback_address_is_refused_without_host(web):
    from circuits.web.server import ServeError, is_loopback, make_server

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.7")
    with pytest.raises(ServeError, match="not a loopback address.*--host 0.0.0.0"):
        make_server(str(web["path"]), "0.0.0.0", 0)


def test_serve_command_binds_loopback_and_says_so(web):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from circuits.cli.main import main; main()",
            "serve",
            "--db",
            str(web["path"]),
            "--port",
            "0",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert "read-only at http://127.0.0.1:" in line and "this machine only" in line, line + proc.stderr.read()
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        status, body, _ = _get(url)
        assert status == 200 and b"catfish-mini" in body
    finally:
        proc.terminate()
        proc.wait(timeout=10)
