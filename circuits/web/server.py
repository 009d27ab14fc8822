"""`circuits serve`: a local, read-only web browser over a catalog (standard library HTTP server).

The catalog is opened read-only (the database refuses writes, including through the SQL box).
The server binds 127.0.0.1 unless told otherwise; `make_server` refuses any address that is not
loopback unless `allow_remote=True` (the CLI sets it only when `--host` is given explicitly).
Pages are server-rendered HTML with inline SVG and no JavaScript; every asset is served from
this process (works offline). A Content-Security-Policy forbids scripts and other origins.

    server = make_server("circuits.duckdb", port=8000)
    server.serve_forever()
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import traceback
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from catalog import media
from catalog.errors import CircuitsError, NotFound, QueryError, ReadOnlyViolation
from circuits.web import data
from circuits.web.pages import Pages, stylesheet

__all__ = ["CatalogServer", "ServeError", "is_loopback", "make_server"]

CSP = "default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; form-action 'self'"
SQL_MAX_ROWS = 1000


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


class CatalogServer(ThreadingHTTPServer):
    """The HTTP server: one read-only catalog, one `Pages` renderer, one lock around the database."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], cat: Any, *, quiet: bool = False):
        self.cat = cat
        self.pages = Pages(cat.display)
        self.quiet = quiet
        self.db_lock = threading.Lock()  # one query at a time: simple, and plenty for one user
        super().__init__(address, _Handler)

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
    db: str | None, host: str = "127.0.0.1", port: int = 8000, *, allow_remote: bool = False, quiet: bool = False
) -> CatalogServer:
    """Open the catalog read-only and bind the server (call `serve_forever()` on the result).

    Args:
        db: catalog path or URL (None: `$CIRCUITS_DB`, else ./circuits.duckdb).
        host: address to bind; loopback unless `allow_remote`.
        port: TCP port (0: any free port).
        allow_remote: permit a non-loopback address (other machines can then read the catalog).
        quiet: do not log requests.

    Raises:
        ServeError: a non-loopback address without `allow_remote`, or the port is taken.
        NotFound, SchemaOutdated, CatalogLocked: see `catalog.open_catalog`.
    """
    from catalog.engine import open_catalog

    if not allow_remote and not is_loopback(host):
        raise ServeError(
            f"refusing to serve the catalog on {host}, which is not a loopback address: other machines "
            f"could read it. Pass --host {host} explicitly to allow that"
        )
    cat = open_catalog(db, read_only=True)
    cls = _CatalogServer6 if ":" in host else CatalogServer
    try:
        return cls((host, port), cat, quiet=quiet)
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port") from exc


class _Handler(BaseHTTPRequestHandler):
    server: CatalogServer
    server_version = "circuits-serve"

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

    def _png(self, body: bytes) -> None:
        self._send(200, body, "image/png", cache=True)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._html(self.server.pages.error(f"{status.value} {status.phrase}", message), status.value)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "this catalog browser is read-only")

    do_PUT = do_DELETE = do_PATCH = do_POST

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        params = urllib.parse.parse_qs(url.query)
        parts = [p for p in url.path.split("/") if p]
        try:
            with self.server.db_lock:
                try:
                    self._route(parts, params)
                finally:  # between requests a DuckDB file is free for writers (catalog.engine)
                    self.server.cat.release()
        except NotFound as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
        except CircuitsError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # a bug: keep the traceback on the console, answer 500
            traceback.print_exc()
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "the server failed on this page (traceback on its console)")

    def _route(self, parts: list[str], params: dict[str, list[str]]) -> None:
        pages, cat = self.server.pages, self.server.cat
        first = parts[0] if parts else ""
        if not parts:
            with cat.session() as s:
                self._html(pages.home(data.home_view(s, params.get("q", [""])[0])))
        elif first == "static" and parts[1:] == ["style.css"]:
            self._send(200, stylesheet().encode(), "text/css; charset=utf-8", cache=True)
        elif first == "circuit" and len(parts) == 2:
            with cat.session() as s:
                self._html(pages.circuit(data.circuit_view(s, _int(parts[1], "circuit id"))))
        elif first == "neuron" and len(parts) == 3:
            model = urllib.parse.unquote(parts[1])
            layer, _, channel = urllib.parse.unquote(parts[2]).rpartition(":")
            with cat.session() as s:
                self._html(pages.neuron(data.neuron_view(s, model, layer, _int(channel, "channel"))))
        elif first == "compare" and len(parts) == 1:
            ids = [_int(c, "circuit id") for value in params.get("c", []) for c in value.split(",") if c]
            with cat.session() as s:
                self._html(pages.compare(data.compare_view(s, ids)))
        elif first == "sql" and len(parts) == 1:
            self._sql(params.get("q", [""])[0])
        elif first == "images" and len(parts) == 2:
            with cat.session() as s:
                self._html(pages.images(parts[1], data.image_set_view(s, parts[1])))
        elif first == "patch" and len(parts) == 4 and parts[3].endswith(".png"):
            run, neuron, rank = _int(parts[1], "run"), _int(parts[2], "neuron"), _int(parts[3][:-4], "rank")
            with cat.session() as s:
                self._png(media.patch_png(s, run, neuron, rank))
        elif first == "thumb" and len(parts) == 2 and parts[1].endswith(".png"):
            with cat.session() as s:
                self._png(media.image_thumbnail_png(s, _int(parts[1][:-4], "image id")))
        else:
            raise NotFound(f"no page at {self.path}")

    def _sql(self, query: str) -> None:
        from catalog.sql import run_query
        from catalog.sql_limits import UnsafeRole

        pages = self.server.pages
        if not query.strip():
            self._html(pages.sql(""))
            return
        try:
            # a page anyone who reaches the server can use: never as a superuser (catalog.sql_limits)
            result = run_query(self.server.cat, query, max_rows=SQL_MAX_ROWS, allow_superuser=False)
        except (ReadOnlyViolation, QueryError, UnsafeRole) as exc:
            self._html(pages.sql(query, error=str(exc)))
            return
        self._html(pages.sql(query, result=result))


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise NotFound(f"{text!r} is not a {what}") from None
