"""`circuits serve`: a local, read-only web browser over a catalog (standard library HTTP server).

The catalog is opened read-only (the database refuses writes, including through the SQL box).
The server binds 127.0.0.1 unless told otherwise; `make_server` refuses any address that is not
loopback unless `allow_remote=True` (the CLI sets it only when `--host` is given explicitly).
Pages are server-rendered HTML with inline SVG and work without JavaScript; one small script
of this process (`/static/graph.js`, the graph's edge-score slider) adds to them. Every asset is
served from this process (works offline); a Content-Security-Policy forbids inline scripts,
scripts from elsewhere and other origins.

Requests are answered only for the Host the server is bound to (or `allow_hosts`) and never to a
cross-origin browser request (`circuits.web.guard`: DNS rebinding). A connection that sends no
complete request within `READ_TIMEOUT_S` is closed. Pages run one at a time under a lock (short,
bounded work: `/compare` takes at most `MAX_COMPARE_IDS` circuits); the SQL box runs outside it, in
a child process, in the same sandbox as `circuits sql` (`circuits.web.sql_box`: locked DuckDB
configuration, memory and address-space caps, no spill, time limit, row and byte caps; PostgreSQL:
a fresh read-only connection per query).

A DuckDB file is let go (free for writers in other processes) `RELEASE_AFTER_S` after the last page
request rather than after each one: a page pulls dozens of thumbnails, and opening the file costs
~15 ms a request.

    server = make_server("circuits.duckdb", port=8000)
    server.serve_forever()
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
import threading
import traceback
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from catalog import media
from catalog.errors import PARAMETER_MENTION, CircuitsError, NotFound
from circuits.web import data
from circuits.web.guard import RequestGuard
from circuits.web.home import home_cursors, home_view
from circuits.web.pages import Pages, script, stylesheet

__all__ = ["MAX_COMPARE_IDS", "READ_TIMEOUT_S", "CatalogServer", "ServeError", "is_loopback", "make_server"]

# scripts only from this server (the graph's slider, /static/graph.js); none inline, none from elsewhere
CSP = (
    "default-src 'none'; script-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; form-action 'self'"
)
SQL_MAX_ROWS = 1000
SQL_MAX_BYTES = 20_000_000  # a page to render in a browser
SQL_TIMEOUT_S = 30.0
MAX_COMPARE_IDS = 20  # more circuits than that make an unreadable page and minutes of work
READ_TIMEOUT_S = 20.0  # a client that has not sent its request by then is dropped


class ServeError(CircuitsError):
    """The browser cannot be served as asked."""


def is_loopback(host: str) -> bool:
    """True when `host` names only this machine (127.0.0.0/8, ::1, or a name resolving there)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


RELEASE_AFTER_S = 0.25
"""Seconds without a page request after which the server lets the catalog file go."""


class CatalogServer(ThreadingHTTPServer):
    """The HTTP server: one read-only catalog, one `Pages` renderer, one lock around the database."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], cat: Any, *, quiet: bool = False, allow_hosts: tuple[str, ...] = ()):
        self.cat = cat
        self.pages = Pages(cat.display, schema=self._schema)
        self.quiet = quiet
        self.db_lock = threading.Lock()  # one page at a time (never held across a user's SQL)
        self._release_timer: threading.Timer | None = None
        super().__init__(address, _Handler)
        host, port = self.server_address[:2]
        self.guard = RequestGuard(str(host), int(port), loopback=is_loopback(str(host)), allow_hosts=allow_hosts)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (or timed out) is no error worth a traceback."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def page_done(self) -> None:
        """Called at the end of each page request (under `db_lock`): let the file go once no request
        has come for `RELEASE_AFTER_S` seconds."""
        if self._release_timer is not None:
            self._release_timer.cancel()
        self._release_timer = threading.Timer(RELEASE_AFTER_S, self._release_when_idle)
        self._release_timer.daemon = True
        self._release_timer.start()

    def _release_when_idle(self) -> None:
        with self.db_lock:
            self.cat.release()

    def server_close(self) -> None:
        """Stop listening and let the catalog file go now."""
        super().server_close()
        with self.db_lock:
            if self._release_timer is not None:
                self._release_timer.cancel()
            self.cat.release()

    def _schema(self) -> list[data.SchemaTable]:
        """The catalog's tables and views for the SQL page (read under the page lock, as pages are)."""
        with self.db_lock:
            try:
                with self.cat.session() as s:
                    return data.schema_view(s)
            finally:
                self.page_done()

    @property
    def url(self) -> str:
        """The address to open in a browser."""
        host, port = self.server_address[:2]
        assert isinstance(host, str), "an AF_INET/AF_INET6 server's address is a str"
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"


class _CatalogServer6(CatalogServer):
    address_family = socket.AF_INET6


def make_server(
    db: str | None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    allow_remote: bool = False,
    quiet: bool = False,
    allow_hosts: tuple[str, ...] = (),
) -> CatalogServer:
    """Open the catalog read-only and bind the server (call `serve_forever()` on the result).

    Args:
        db: catalog path or URL (None: `$CIRCUITS_DB`, else ./circuits.duckdb).
        host: address to bind; loopback unless `allow_remote`.
        port: TCP port (0: any free port).
        allow_remote: permit a non-loopback address (other machines can then read the catalog).
        quiet: do not log requests.
        allow_hosts: more Host names to answer (besides the bound address, and `localhost` when
            it is loopback), e.g. a name other machines use with `allow_remote`.

    Raises:
        ServeError: a non-loopback address without `allow_remote`, a port outside 0…65535, or
            the port is taken.
        NotFound, SchemaOutdated, CatalogLocked: see `catalog.open_catalog`.
    """
    from catalog.sql import open_sql_catalog

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServeError(f"--port {port} is not a TCP port: give a number from 1 to 65535 (0: any free port)")
    if not allow_remote and not is_loopback(host):
        raise ServeError(
            f"refusing to serve the catalog on {host}, which is not a loopback address: other machines "
            f"could read it. Pass --host {host} explicitly to allow that"
        )
    cat = open_sql_catalog(db)  # read-only; a DuckDB file with the SQL sandbox's locked settings
    cls = _CatalogServer6 if ":" in host else CatalogServer
    try:
        return cls((host, port), cat, quiet=quiet, allow_hosts=tuple(allow_hosts))
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port") from exc


class _Handler(BaseHTTPRequestHandler):
    server: CatalogServer
    server_version = "circuits-serve"
    timeout = READ_TIMEOUT_S  # socket timeout: a partial request does not hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    # ---------------------------------------------------------------- responses

    def _send(self, status: int, body: bytes, content_type: str, *, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _html(self, text: str, status: int = 200) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8")

    def _image(self, body: bytes) -> None:
        self._send(200, body, media.image_mime(body) or "application/octet-stream", cache=True)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._html(self.server.pages.error(f"{status.value} {status.phrase}", message), status.value)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        if self._refused():
            return
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "this catalog browser is read-only")

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _refused(self) -> bool:
        reason = self.server.guard.refusal(self.headers)
        if reason is None:
            return False
        body = f"{reason}\n".encode()
        try:
            self.send_response(HTTPStatus.FORBIDDEN.value)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True
        return True

    def do_GET(self) -> None:
        if self._refused():
            return
        url = urllib.parse.urlsplit(self.path)
        params = urllib.parse.parse_qs(url.query)
        parts = [p for p in url.path.split("/") if p]
        try:
            if parts == ["sql"]:  # the user's query: outside the page lock, in the sandbox
                self._sql(params.get("q", [""])[0])
                return
            with self.server.db_lock:
                try:
                    self._route(parts, params)
                finally:  # soon after the last request the file is free for writers (catalog.engine)
                    self.server.page_done()
        except NotFound as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
        except CircuitsError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # a bug: keep the traceback on the console, answer 500
            traceback.print_exc()
            try:
                self._error(
                    HTTPStatus.INTERNAL_SERVER_ERROR, "the server failed on this page (traceback on its console)"
                )
            except (BrokenPipeError, ConnectionResetError):
                pass

    def _route(self, parts: list[str], params: dict[str, list[str]]) -> None:
        pages, cat = self.server.pages, self.server.cat
        first = parts[0] if parts else ""
        if not parts:
            with cat.session() as s:
                self._html(pages.home(home_view(s, params.get("q", [""])[0], home_cursors(params))))
        elif first == "static" and parts[1:] == ["style.css"]:
            self._send(200, stylesheet().encode(), "text/css; charset=utf-8", cache=True)
        elif first == "static" and parts[1:] == ["graph.js"]:
            self._send(200, script().encode(), "text/javascript; charset=utf-8", cache=True)
        elif first == "circuit" and len(parts) == 2:
            with cat.session() as s:
                view = data.circuit_view(s, _int(parts[1], "circuit id"), db=cat.display)
                self._html(pages.circuit(view, params.get("min_score", [""])[0]))
        elif first == "neuron" and len(parts) == 3:
            model = urllib.parse.unquote(parts[1])
            layer, _, channel = urllib.parse.unquote(parts[2]).rpartition(":")
            with cat.session() as s:
                self._html(pages.neuron(data.neuron_view(s, model, layer, _int(channel, "channel"))))
        elif first in ("model", "concept") and len(parts) == 2:
            name = urllib.parse.unquote(parts[1])
            with cat.session() as s:
                q, cursors = params.get("q", [""])[0], home_cursors(params)
                home = (
                    home_view(s, q, cursors, model=name) if first == "model" else home_view(s, q, cursors, concept=name)
                )
            self._html(pages.home(home, title=f"{first} {name}"))
        elif first == "compare" and len(parts) == 1:
            texts = [c for value in params.get("c", []) for c in value.split(",") if c]
            if len(dict.fromkeys(texts)) > MAX_COMPARE_IDS:
                raise CircuitsError(f"compare at most {MAX_COMPARE_IDS} circuits at a time")
            ids = list(dict.fromkeys(_int(c, "circuit id") for c in texts))
            with cat.session() as s:
                self._html(pages.compare(data.compare_view(s, ids)))
        elif first == "images" and len(parts) == 2:
            with cat.session() as s:
                self._html(pages.images(parts[1], data.image_set_view(s, parts[1])))
        elif first == "patch" and len(parts) == 4 and parts[3].endswith(".png"):
            run, neuron, rank = _int(parts[1], "run"), _int(parts[2], "neuron"), _int(parts[3][:-4], "rank")
            with cat.session() as s:
                self._image(media.patch_png(s, run, neuron, rank))
        elif first in ("refpatch", "refheat") and len(parts) == 4 and parts[3].endswith(".png"):
            run, neuron, rank = _int(parts[1], "run"), _int(parts[2], "neuron"), _int(parts[3][:-4], "rank")
            read = media.patch_png if first == "refpatch" else media.patch_heatmap_png
            with cat.session() as s:
                self._image(read(s, run, neuron, rank, reference=True))
        elif first == "heat" and len(parts) == 4 and parts[3].endswith(".png"):
            run, neuron, rank = _int(parts[1], "run"), _int(parts[2], "neuron"), _int(parts[3][:-4], "rank")
            with cat.session() as s:
                self._image(media.patch_heatmap_png(s, run, neuron, rank))
        elif first == "featurevis" and len(parts) == 3 and parts[2].endswith(".png"):
            from catalog.media_featurevis import featurevis_png

            run, neuron = _int(parts[1], "run"), _int(parts[2][:-4], "neuron")
            with cat.session() as s:
                self._image(featurevis_png(s, run, neuron))
        elif first == "thumb" and len(parts) == 2 and parts[1].endswith(".png"):
            with cat.session() as s:
                self._image(media.image_thumbnail_png(s, _int(parts[1][:-4], "image id")))
        else:
            raise NotFound(f"no page at {self.path}")

    def _sql(self, query: str) -> None:
        from circuits.web.sql_box import run_in_child

        pages, cat = self.server.pages, self.server.cat
        if not query.strip():
            self._html(pages.sql(""))
            return
        db = str(cat.path) if cat.path is not None else cat.url.render_as_string(hide_password=False)
        try:
            # in a child process, in `circuits sql`'s sandbox, never as a superuser (circuits.web.sql_box)
            result = run_in_child(db, query, max_rows=SQL_MAX_ROWS, max_bytes=SQL_MAX_BYTES, timeout_s=SQL_TIMEOUT_S)
        except CircuitsError as exc:
            self._html(pages.sql(query, error=sql_box_message(str(exc))))
            return
        self._html(pages.sql(query, result=result))


def sql_box_message(text: str) -> str:
    """A query error as the SQL box says it: the library names its parameters (`max_bytes=`),
    which a browser cannot set; the page names the box's limit and the command that can lift it."""
    text = re.sub(r"(give more time|raise) with `timeout_s=` SECONDS", r"\1 with `circuits sql --timeout`", text)
    text = re.sub(r"raise `max_bytes=`", "run it with `circuits sql --max-bytes`", text)
    return PARAMETER_MENTION.sub("the SQL box's limit", text)


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise NotFound(f"{text!r} is not a {what}") from None
