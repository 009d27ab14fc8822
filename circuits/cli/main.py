"""The `circuits` command: a thin root that mounts each package's Typer sub-app.

Heavy imports (torch, alembic, duckdb) happen inside command bodies, so `circuits --help` is
instant. User errors (`CircuitsError`) become one line on stderr and exit code 1; anything else
keeps its traceback because it is a bug.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from ingest.threads import set_wait_policy

set_wait_policy()  # OMP_WAIT_POLICY=PASSIVE before any sub-command can import torch (see ingest.threads)

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from catalog.errors import CircuitsError  # noqa: E402
from circuits.cli import db, demo, export, ingest, masks, read, train  # noqa: E402


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


for _sub in (db.app, ingest.app, masks.app, train.app, read.app, export.app, demo.app):
    app.add_typer(_sub)


def main() -> None:
    # Idle OpenMP threads spin by default; on a small shared CPU that halves torch's throughput
    # (measured: 12 vs 73 training images/s on 2 cores). Set at import above, and again here for
    # callers that import this module after torch (a no-op for OpenMP then, but children inherit it).
    set_wait_policy()
    app()
