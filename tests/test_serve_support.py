"""Support for the browser tests: a small catfish-mini catalog, and headless Chromium over the
DevTools protocol (a stdlib WebSocket client, so the tests need no extra Python package).

`chromium()` finds the browser (Debian's `chromium`; `$CHROMIUM` overrides); tests skip with a
clear reason only when it is missing (CI installs it). The catalog is built once per test process.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

_CACHE: dict[str, Any] = {}


def test_websocket_frames_round_trip():
    """The client's frame encoder and decoder agree (masked and unmasked, all length forms)."""
    for size in (0, 5, 125, 126, 65535, 65536, 70000):
        payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        a, b = socket.socketpair()
        try:
            threading.Thread(target=lambda: b.sendall(_frame(0x1, payload, mask=False)), daemon=True).start()  # noqa: B023 (joined in this iteration)
            ws = _WebSocket.__new__(_WebSocket)
            ws.sock, ws.buffer = a, b""
            assert ws._read_frame() == (0x1, True, payload)
        finally:
            a.close()
            b.close()


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


def _frame(opcode: int, payload: bytes, *, mask: bool = True) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class _WebSocket:
    """The smallest WebSocket client the DevTools protocol needs (RFC 6455, text frames)."""

    def __init__(self, url: str, timeout: float = 30.0):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        assert m, url
        self.sock = socket.create_connection((m[1], int(m[2])), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {m[3]} HTTP/1.1\r\nHost: {m[1]}:{m[2]}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            assert chunk, "DevTools closed the connection during the handshake"
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _read_frame(self) -> tuple[int, bool, bytes]:
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", self._read(8))
        key = self._read(4) if b1 & 0x80 else None
        payload = self._read(n)
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return b0 & 0x0F, bool(b0 & 0x80), payload

    def send(self, text: str) -> None:
        self.sock.sendall(_frame(0x1, text.encode()))

    def recv(self) -> str:
        parts: list[bytes] = []
        while True:
            opcode, fin, payload = self._read_frame()
            if opcode == 0x9:  # ping
                self.sock.sendall(_frame(0xA, payload))
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            parts.append(payload)
            if fin:
                return b"".join(parts).decode()

    def close(self) -> None:
        try:
            self.sock.sendall(_frame(0x8, b""))
        except OSError:
            pass
        self.sock.close()


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol (a context manager:
    `close` on exit).

    Records console messages, uncaught exceptions, log entries and every network response of
    the page, so tests can assert there were no errors and that images loaded.
    """

    def __init__(self, *, offline: bool = False):
        self.profile = tempfile.mkdtemp(prefix="h6-chromium-")
        args = [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}",
            "--window-size=1300,1100",
        ]
        if offline:  # every non-file request would go to a dead proxy (and the page is set offline)
            args += ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]
        self.proc = subprocess.Popen(
            [*args, "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        port = self._devtools_port()
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = _WebSocket(page["webSocketDebuggerUrl"])
        self.ids = itertools.count(1)
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        if offline:
            self.call(
                "Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1, uploadThroughput=-1
            )

    def _devtools_port(self) -> int:
        deadline = time.monotonic() + 30
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if m:
                threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep draining
                return int(m[1])
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError("chromium did not start its DevTools server")

    def call(self, method: str, **params: Any) -> dict:
        """Send one command and return its result (events that arrive meanwhile are recorded)."""
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def goto(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait for the load event (all images loaded)."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_load(timeout)

    def click(self, selector: str, timeout: float = 30.0) -> None:
        """Click an element (a link, or a button that submits) and wait for the next page's load."""
        self.events.clear()
        assert self.evaluate(f"(e => e ? (e.click(), true) : false)(document.querySelector({json.dumps(selector)}))"), (
            selector
        )
        self.wait_load(timeout)

    def wait_load(self, timeout: float = 30.0) -> None:
        """Wait for the page's load event (recorded since the last `events.clear()`)."""
        url = "the page"
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            assert time.monotonic() < deadline, f"{url} did not finish loading"
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str) -> Any:
        """A JavaScript expression's value (JSON-serialisable)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries since the last navigation."""
        out = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console: {p.get('args')}")
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif method == "Network.loadingFailed":
                out.append(f"network: {p.get('errorText')}")
        return out

    def responses(self) -> list[dict]:
        """(requestId, url, status, mimeType) of every response since the last navigation."""
        return [
            {
                "requestId": e["params"]["requestId"],
                "url": e["params"]["response"]["url"],
                "status": e["params"]["response"]["status"],
                "mimeType": e["params"]["response"]["mimeType"],
            }
            for e in self.events
            if e.get("method") == "Network.responseReceived"
        ]

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def body(self, request_id: str) -> bytes:
        """A response's body bytes."""
        result = self.call("Network.getResponseBody", requestId=request_id)
        return base64.b64decode(result["body"]) if result.get("base64Encoded") else result["body"].encode()

    def screenshot(self, path: Path) -> Path:
        """Save a full-page PNG screenshot."""
        result = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)
