"""Which optional extra a missing third-party module belongs to, and the one-line message saying so.

The base install (catalog, queries, the read commands) needs no torch; model work needs the
`[ingest]` extra, PostgreSQL catalogs `[postgres]`, heat-maps `[plots]`, the web view `[serve]`. The root command turns a
`ModuleNotFoundError` for one of these modules into `error: circuits CMD needs the [X] extra: …`;
any other missing module keeps its traceback (a broken install, not a missing extra).
"""

from __future__ import annotations

DISTRIBUTION = "visual-circuit-catalog"

EXTRA_OF_MODULE = {
    "torch": "ingest",
    "torchvision": "ingest",
    "PIL": "ingest",
    "psycopg": "postgres",
    "psycopg_binary": "postgres",
    "matplotlib": "plots",
    "jinja2": "serve",
}
"""Top-level import name → the `pyproject.toml` extra that installs it."""

__all__ = ["DISTRIBUTION", "EXTRA_OF_MODULE", "missing_extra", "missing_extra_message"]


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The extra that provides the module `exc` could not find, or None when it is not optional."""
    top = (exc.name or "").split(".", 1)[0]
    return EXTRA_OF_MODULE.get(top)


def missing_extra_message(command: str, exc: ModuleNotFoundError) -> str | None:
    """`circuits CMD needs the [X] extra: pip install '…[X]'`, or None for a non-optional module.

    Args:
        command: the command as typed after `circuits` (e.g. "ingest", "db init").
        exc: the error raised by the command's first import of the module.
    """
    extra = missing_extra(exc)
    if extra is None:
        return None
    return f"circuits {command} needs the [{extra}] extra: pip install '{DISTRIBUTION}[{extra}]'"
