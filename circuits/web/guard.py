"""Which requests `circuits serve` answers: the Host header and cross-origin checks.

A server on 127.0.0.1 is still reachable from any web page the user visits: the page's script
can point a name it controls at 127.0.0.1 (DNS rebinding) and read the answers, which then come
back with `Host: evil.example`. So a request is answered only when its Host names the address
the server is bound to (a loopback server also answers `localhost`), or a name given with
`--allow-host`; and a browser's cross-origin request (an `Origin` of another site, or
`Sec-Fetch-Site: cross-site`/`same-site`) is refused even when the Host is right.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterable
from typing import Protocol

__all__ = ["RequestGuard"]

_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "127.0.0.1", "::1")
_FETCH_SITES_OK = ("same-origin", "none")  # "none": typed in the address bar or a bookmark


def _normal(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _split_host(value: str) -> tuple[str, int | None] | None:
    """`name[:port]` or `[v6][:port]` → (normalised name, port or None); None when malformed."""
    value = value.strip()
    if not value or any(c.isspace() or c in "/@?#\\" for c in value):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    elif value.count(":") > 1:  # a bare IPv6 address: no port
        name, port_text = value, None
    else:
        name, _, port_text = value.partition(":")
        port_text = port_text if ":" in value else None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        return _normal(name), int(port_text)
    return _normal(name), None


class _Headers(Protocol):
    def get(self, name: str, /) -> str | None: ...


class RequestGuard:
    """Decides whether a request's Host and Origin headers may be answered.

    Args:
        bound_host: the address the server listens on.
        port: the port it listens on.
        loopback: whether `bound_host` is loopback (then `localhost` is accepted too).
        allow_hosts: more names the server may be reached by (`--allow-host`).
    """

    def __init__(self, bound_host: str, port: int, *, loopback: bool, allow_hosts: Iterable[str] = ()):
        names = {_normal(bound_host), *(_normal(h) for h in allow_hosts if h.strip())}
        if loopback:
            names.update(_LOOPBACK_NAMES)
        self.names = frozenset(names)
        self.port = port

    def _host_ok(self, value: str) -> bool:
        parsed = _split_host(value)
        if parsed is None:
            return False
        name, port = parsed
        return name in self.names and (port is None or port == self.port)

    def refusal(self, headers: _Headers) -> str | None:
        """Why the request must not be answered (one sentence), or None to answer it."""
        host = headers.get("Host")
        if host is None:
            return "the request has no Host header"
        if not self._host_ok(host):
            return (
                f"this server does not answer for host {host[:80]!r} (a page of another site may be "
                "trying to read the catalog); open it by the address it printed, or start it with "
                "--allow-host NAME"
            )
        origin = headers.get("Origin")
        if origin is not None:
            url = urllib.parse.urlsplit(origin.strip())
            if url.scheme not in ("http", "https") or not self._host_ok(url.netloc):
                return f"cross-origin request from {origin[:80]!r} refused"
        site = headers.get("Sec-Fetch-Site")
        if site is not None and site.strip().lower() not in _FETCH_SITES_OK:
            return f"cross-site request (Sec-Fetch-Site: {site[:40]}) refused"
        return None
