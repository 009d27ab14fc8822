"""Support for the browser tests: a small catfish-mini catalog, the web view served from a thread,
and headless Chromium driven through Playwright (the `dev` extra).

The browser is Debian's `chromium` (`$CHROMIUM` overrides), found by `chromium()`: Playwright drives
it by its path, so nothing is downloaded (never run `playwright install`). Tests skip with a clear
reason only when the browser or Playwright is missing (CI installs both). The catalog is built once
per test process.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser as PlaywrightBrowser
    from playwright.sync_api import ConsoleMessage, Playwright, Request, Response

_CACHE: dict[str, Any] = {}


def test_browser_records_what_the_page_tests_assert_is_absent(tmp_path):
    """The page tests assert `errors() == []`: console errors, uncaught exceptions and failed
    loads must be recorded; offline must cut loopback too, while `file:` pages still load."""
    page = tmp_path / "p.html"
    page.write_text(
        '<!doctype html><img src="missing.png"><script>console.error("said")</script>'
        '<script>throw new Error("thrown")</script>'
    )
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/p.html"
    try:
        with Browser() as online, Browser(offline=True) as offline:
            online.goto(url)
            errors = online.errors()
            assert any("said" in e for e in errors) and any("thrown" in e for e in errors), errors
            assert any("404" in e and "missing.png" in e for e in errors), errors
            got = {(r.url, r.status) for r in online.responses()}
            assert {(url, 200), (url.replace("p.html", "missing.png"), 404)} <= got
            online.goto(url.replace("p.html", "missing.png"))
            assert online.responses()[0].status == 404  # the record starts again at each navigation

            offline.goto(page.as_uri())
            assert offline.requested_urls()[0] == page.as_uri()
            from playwright.sync_api import Error

            with pytest.raises(Error, match="ERR_INTERNET_DISCONNECTED"):
                offline.goto(url)
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


# ---------------------------------------------------------------- the catalog


def demo_catalog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A catalog with two catfish-mini circuits (star, stripes_star), thumbnails and one ablation.

    Returns:
        {"path": Path, "circuits": [id, id], "runs": [id, id], "sizes": {circuit: {layer: k}}}.
    """
    if "catalog" in _CACHE:
        return _CACHE["catalog"]
    from catalog.engine import close_catalogs_of, open_catalog
    from ingest.ablation import ablate
    from ingest.image_sets import resolve_images
    from ingest.pipeline import IngestConfig, ingest_concept

    path = tmp_path_factory.mktemp("web") / "web.duckdb"
    cat = open_catalog(path, create=True)
    circuits, runs, sizes = [], [], {}
    for concept, k in (("star", (2, 3, 3, 2, 2)), ("stripes_star", 3)):
        images = resolve_images(dataset=f"catfish:{concept}", n=8, seed=0)
        result = ingest_concept(cat, IngestConfig("catfish-mini", concept, k=k, device="cpu"), images)
        circuits.append(result.circuit_id)
        runs.append(result.run_id)
    ablate(cat, circuits[1], resolve_images(dataset="catfish:stripes_star", n=8, seed=1), device="cpu")
    with cat.session() as s:
        from catalog import store

        for cid in circuits:
            ref = store.read_circuit(s, cid)
            sizes[cid] = {name: len(ch) for name, ch in zip(ref.layer_names, ref.channels)}
    close_catalogs_of(path)
    _CACHE["catalog"] = {"path": path, "circuits": circuits, "runs": runs, "sizes": sizes}
    return _CACHE["catalog"]


class ServerThread:
    """`circuits.web` served on 127.0.0.1 from a thread of this process, for one test module (a
    context manager: `close` on exit)."""

    def __init__(self, db: Path):
        from circuits.web.server import make_server

        self.server = make_server(str(db), "127.0.0.1", 0, quiet=True)
        self.url = self.server.url.rstrip("/")
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.server.cat.close()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- Chromium


def chromium() -> str:
    """The Chromium executable, or skip the test with the reason."""
    found = os.environ.get("CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    if not found:
        pytest.skip("chromium not found (install Debian's `chromium`, or set $CHROMIUM)")
    return found


class _Shared:
    """Playwright's driver (a Node process) and one headless Chromium, shared by every `Browser`
    of this test process (each in its own browser context): started by the first, stopped when
    the test session ends (`conftest.pytest_sessionfinish`), so no process outlives the tests and
    the browser modules do not each start their own (~1 s apiece)."""

    def __init__(self) -> None:
        self.users = 0
        self.playwright: Playwright | None = None
        self.browser: PlaywrightBrowser | None = None

    def acquire(self) -> PlaywrightBrowser:
        if self.browser is None:
            executable = chromium()
            sync_api = pytest.importorskip(
                "playwright.sync_api", reason="playwright not installed (pip install -e '.[dev]')"
            )
            self.playwright = sync_api.sync_playwright().start()
            try:
                # no sandbox: the tests run as root in containers, where Chromium's sandbox cannot start
                self.browser = self.playwright.chromium.launch(executable_path=executable, chromium_sandbox=False)
            except BaseException:
                self._stop()
                raise
        self.users += 1
        return self.browser

    def release(self) -> None:
        self.users -= 1

    def stop(self) -> None:
        """Stop Chromium and the driver (the end of the test session)."""
        self._stop()

    def _stop(self) -> None:
        try:
            if self.browser is not None:
                self.browser.close()
        finally:
            if self.playwright is not None:
                self.playwright.stop()
            self.browser = self.playwright = None


_SHARED = _Shared()


class Browser:
    """One page of headless Chromium in its own browser context, 1300 × 1100 px (a context
    manager: `close` on exit).

    Records console errors (including the browser's own, such as a resource that failed to
    load), uncaught exceptions, failed requests and every request and response of the page since
    the last navigation, so tests can assert there were no errors and that images loaded.

    Args:
        offline: the page has no network at all (loopback included); `file:` and `data:` URLs
            still load, so a self-contained report must open.
        javascript: False runs the page with scripts disabled.
    """

    def __init__(self, *, offline: bool = False, javascript: bool = True):
        self._errors: list[str] = []
        self._requests: list[Request] = []
        self._responses: list[Response] = []
        browser = _SHARED.acquire()
        try:
            self.context = browser.new_context(
                viewport={"width": 1300, "height": 1100}, offline=offline, java_script_enabled=javascript
            )
        except BaseException:
            _SHARED.release()
            raise
        self._closed = False
        try:
            self.page = self.context.new_page()
            self.page.on("console", self._on_console)
            self.page.on("pageerror", lambda err: self._errors.append(f"exception: {err}"))
            self.page.on("requestfailed", lambda r: self._errors.append(f"network: {r.failure} {r.url}"))
            self.page.on("request", lambda r: self._requests.append(r))
            self.page.on("response", lambda r: self._responses.append(r))
        except BaseException:
            self.close()
            raise

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "assert"):
            self._errors.append(f"console: {message.text} {message.location.get('url', '')}")

    def _clear(self) -> None:
        self._errors.clear()
        self._requests.clear()
        self._responses.clear()

    def goto(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait for the load event (all images loaded)."""
        self._clear()
        self.page.goto(url, wait_until="load", timeout=timeout * 1000)

    def click(self, selector: str, timeout: float = 30.0) -> None:
        """Click an element (a link, or a button that submits) and wait for the next page's load."""
        self._clear()
        with self.page.expect_navigation(wait_until="load", timeout=timeout * 1000):
            self.page.locator(selector).click(timeout=timeout * 1000)

    def wait_load(self, timeout: float = 30.0) -> None:
        """Wait for the page's load event."""
        self.page.wait_for_load_state("load", timeout=timeout * 1000)

    def evaluate(self, expression: str) -> Any:
        """A JavaScript expression's value (JSON-serialisable); a thrown exception fails the test."""
        return self.page.evaluate(expression)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed requests since the last navigation."""
        return list(self._errors)

    def responses(self) -> list[Response]:
        """Every response since the last navigation (`.url`, `.status`, `.headers`, `.body()`)."""
        return list(self._responses)

    def requested_urls(self) -> list[str]:
        """The URL of every request since the last navigation (Playwright does not report `data:` URLs)."""
        return [r.url for r in self._requests]

    def screenshot(self, path: Path) -> Path:
        """Save a full-page PNG screenshot."""
        self.page.screenshot(path=path, full_page=True)
        return path

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.context.close()
        finally:
            _SHARED.release()
