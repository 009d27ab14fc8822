"""The `circuits` command: a thin root that mounts each package's Typer sub-app.

Heavy imports (torch, alembic, duckdb) happen inside command bodies, so `circuits --help` is
instant. User errors (`CircuitsError`) become one line on stderr and exit code 1; anything else
keeps its traceback because it is a bug.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from catalog.errors import CircuitsError


class _RootGroup(TyperGroup):
    """Converts user errors raised by any sub-command into a one-line message and exit code 1."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except CircuitsError as exc:
            typer.echo(f"error: {exc}", err=True)
            ctx.exit(1)


app = typer.Typer(
    cls=_RootGroup,
    help="Find circuits in vision models, keep them in a queryable catalog, and edit models with them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _mount() -> None:
    from catalog.cli import app as catalog_app
    from ingest.cli import app as ingest_app
    from queries.cli import app as queries_app

    for sub in (catalog_app, ingest_app, queries_app):
        app.add_typer(sub)


_mount()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
