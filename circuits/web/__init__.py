"""The catalog browser: `circuits serve` (a local read-only web app) and `circuits report`.

    from circuits.web import make_server, report_html
    server = make_server("circuits.duckdb")          # binds 127.0.0.1:8000
    server.serve_forever()

Pages are rendered on the server (Jinja2 templates, circuit graphs drawn as SVG in
`circuits.web.graph`); nothing is fetched from another origin, so it works offline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ServeError", "make_server", "report_html"]

if TYPE_CHECKING:
    from circuits.web.pages import report_html
    from circuits.web.server import ServeError, make_server


def __getattr__(name: str) -> Any:
    if name == "report_html":
        from circuits.web.pages import report_html

        return report_html
    if name in ("make_server", "ServeError"):
        from circuits.web import server

        return getattr(server, name)
    raise AttributeError(f"module 'circuits.web' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
