"""Commands of the `queries` package, mounted by the root `circuits` app.

Each feature registers its commands on `app` from its own module, imported below.
"""

from __future__ import annotations

import typer

app = typer.Typer()

from queries import cli_export, cli_read  # noqa: E402,F401  (registers commands)
