"""The `circuits` command: a thin root that mounts each package's Typer sub-app.

Heavy imports (torch, alembic, duckdb) happen inside command bodies, so `circuits --help` is
instant. User errors (`CircuitsError`) and a missing optional extra (torch, psycopg, matplotlib:
`circuits.cli.extras`) become one line on stderr and exit code 1; anything else keeps its
traceback because it is a bug.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ingest.threads import set_wait_policy

set_wait_policy()  # OMP_WAIT_POLICY=PASSIVE before any sub-command can import torch (see ingest.threads)

import typer  # noqa: E402 (after the set-up above)
from typer.core import TyperGroup  # noqa: E402 (after the set-up above)

from catalog.errors import CircuitsError  # noqa: E402 (after the set-up above)
from circuits.cli import db, defend, demo, export, ingest, many, masks, read, serve, train  # noqa: E402 (after the set-up above)
from circuits.cli.extras import missing_extra_message  # noqa: E402 (after the set-up above)

if TYPE_CHECKING:  # typer vendors click: its Command.invoke takes this Context (typer.Context subclasses it)
    from typer._click import Command, Context


class _RootGroup(TyperGroup):
    """Converts user errors raised by any sub-command into a one-line message and exit code 1."""

    def invoke(self, ctx: Context):
        name = self._command_name(ctx)
        try:
            return super().invoke(ctx)
        except CircuitsError as exc:
            typer.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except ModuleNotFoundError as exc:
            message = missing_extra_message(name, exc)
            if message is None:
                raise
            typer.echo(f"error: {message}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            typer.echo(f"\ninterrupted: {name} stopped; {_KEPT.get(name.split(' ')[0], _KEPT_DEFAULT)}", err=True)
            ctx.exit(130)
        except OSError as exc:
            message = os_error_message(exc)
            if message is None:
                raise
            typer.echo(f"error: {message}", err=True)
            ctx.exit(1)

    def _command_name(self, ctx: Context) -> str:
        """The command as typed after `circuits` ("ingest", "db init"), for messages."""
        words = [*ctx._protected_args, *ctx.args]
        names: list[str] = []
        group: Command = self
        for word in words:
            cmd = group.get_command(ctx, word) if hasattr(group, "get_command") else None
            if cmd is None:
                break
            names.append(word)
            group = cmd
        return " ".join(names) or "this command"


# What a command interrupted by Ctrl-C leaves: every write is one transaction, files are atomic.
_KEPT_DEFAULT = "the catalog keeps everything stored before; nothing half-written was kept"
_KEPT = {
    "ingest": "runs stored before are kept; the run in progress was not stored (at most a `failed` run row records it)",
    "ablate": "evaluations stored before are kept; this one was not stored",
    "train": "the weights file is written only when training finishes; nothing was written",
    "export": "no mask file was written (files are written whole or not at all)",
    "apply": "no weights file was written (files are written whole or not at all)",
    "sql": "the query was read-only; nothing changed",
}


def os_error_message(exc: OSError) -> str | None:
    """A one-line message for an operating-system error on a path the user gave (or None)."""
    if not isinstance(exc, OSError) or type(exc).__module__ not in ("builtins",):
        return None  # a library's OSError subclass (e.g. a network error) is not a path problem
    reason = exc.strerror or str(exc)
    if exc.filename is not None:
        return f"{exc.filename}: {reason} (check the path and its permissions)"
    if exc.errno is not None:
        return f"{reason} (errno {exc.errno})"
    return None


app = typer.Typer(
    cls=_RootGroup,
    help="Find circuits in vision models, keep them in a queryable catalog, and edit models with them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


for _sub in (db.app, ingest.app, many.app, masks.app, train.app, read.app, export.app, demo.app, serve.app, defend.app):
    app.add_typer(_sub)


def main() -> None:
    # Idle OpenMP threads spin by default; on a small shared CPU that halves torch's throughput
    # (measured: 12 vs 73 training images/s on 2 cores). Set at import above, and again here for
    # callers that import this module after torch (a no-op for OpenMP then, but children inherit it).
    set_wait_policy()
    app()
