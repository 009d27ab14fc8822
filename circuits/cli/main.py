"""The `circuits` command: a thin root that mounts each package's Typer sub-app.

Heavy imports (torch, alembic, duckdb) happen inside command bodies, so `circuits --help` is
instant. User errors (`CircuitsError`) and a missing optional extra (torch, psycopg, matplotlib:
`circuits.cli.extras`) become one line on stderr and exit code 1; anything else keeps its
traceback because it is a bug.

Ctrl-C while a module is being imported (`import duckdb` or torch inside a command) must not
raise KeyboardInterrupt there: a native extension half-way through its initialisation aborts the
process ("Critical nanobind error", signal 6). So the command line handles SIGINT itself: during
start-up and during any import it prints one line and exits 130 at once; elsewhere it raises
KeyboardInterrupt as usual (turned into one line and 130 by `_RootGroup`).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING


def _on_sigint(signum: int, frame: object) -> None:
    in_import = False
    while frame is not None:
        if getattr(frame, "f_code", None) is not None and "importlib._bootstrap" in frame.f_code.co_filename:  # type: ignore[attr-defined]
            in_import = True
            break
        frame = frame.f_back  # type: ignore[attr-defined]
    if in_import or not _STATE["in_command"]:
        os.write(2, b"\ninterrupted while starting: nothing was done\n")
        os._exit(130)
    _STATE["interrupted"] = True
    raise KeyboardInterrupt


_STATE = {"in_command": False, "interrupted": False}


def install_sigint_handler() -> None:
    """Handle Ctrl-C as described in the module docstring (the `circuits` process only)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


if os.path.basename(sys.argv[0] if sys.argv else "") == "circuits":  # the console script: from the first import on
    install_sigint_handler()

from ingest.threads import set_wait_policy  # noqa: E402 (after the SIGINT handler)

set_wait_policy()  # OMP_WAIT_POLICY=PASSIVE before any sub-command can import torch (see ingest.threads)


import typer  # noqa: E402 (after the set-up above)
from typer.core import TyperGroup  # noqa: E402 (after the set-up above)

from catalog.errors import CircuitsError  # noqa: E402 (after the set-up above)
from circuits.cli import concept, db, defend, demo, export, ingest, many, masks, read, serve, train  # noqa: E402 (after the set-up above)
from circuits.cli.extras import missing_extra_message  # noqa: E402 (after the set-up above)
from circuits.cli.render import cli_message, safe_text  # noqa: E402 (after the set-up above)

if TYPE_CHECKING:  # typer vendors click: its Command.invoke takes this Context (typer.Context subclasses it)
    from typer._click import Command, Context


@contextmanager
def _warnings_as_flags(command: str) -> Iterator[None]:
    """Inside the block, library warnings (which name parameters) print with this command's flags."""
    import warnings

    library_format = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        return library_format(cli_message(str(message), command), category, filename, lineno, line)

    warnings.formatwarning = formatwarning
    try:
        yield
    finally:
        warnings.formatwarning = library_format


class _RootGroup(TyperGroup):
    """Converts user errors raised by any sub-command into a one-line message and exit code 1."""

    def invoke(self, ctx: Context):
        name = self._command_name(ctx)
        _STATE["in_command"] = True
        try:
            try:
                with _warnings_as_flags(name):
                    return super().invoke(ctx)
            except Exception:
                if _STATE["interrupted"]:  # Ctrl-C inside a native call comes back as that library's
                    raise KeyboardInterrupt from None  # error (DuckDB: RuntimeError "Query interrupted")
                raise
        except CircuitsError as exc:
            if _DEBUG["on"] and exc.__cause__ is not None:  # e.g. the traceback of a user model's error
                import traceback

                traceback.print_exception(exc.__cause__)
            typer.echo(f"error: {safe_text(cli_message(str(exc), name))}", err=True)  # messages may quote catalog text
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
        except Exception as exc:
            message = user_model_message(exc, name)
            if message is None or _DEBUG["on"]:
                raise  # a bug in this tool (or --debug asked for the traceback)
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


_DEBUG = {"on": False}  # set by `circuits --debug`


def user_model_message(exc: BaseException, command: str) -> str | None:
    """One line for an exception raised inside the user's own model code (or None: not the user's)."""
    from ingest.user_code import user_model_error

    err = user_model_error(exc, f"`circuits {command}`")
    return None if err is None else str(err)


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


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error raised in a user's model."),
) -> None:
    """Find circuits in vision models, keep them in a queryable catalog, and edit models with them."""
    _DEBUG["on"] = debug


for _sub in (
    db.app,
    ingest.app,
    many.app,
    masks.app,
    train.app,
    read.app,
    export.app,
    demo.app,
    serve.app,
    defend.app,
    concept.app,
):
    app.add_typer(_sub)


def main() -> None:
    # Idle OpenMP threads spin by default; on a small shared CPU that halves torch's throughput
    # (measured: 12 vs 73 training images/s on 2 cores). Set at import above, and again here for
    # callers that import this module after torch (a no-op for OpenMP then, but children inherit it).
    set_wait_policy()
    install_sigint_handler()
    app()
