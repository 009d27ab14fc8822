"""Commands of the `ingest` package, mounted by the root `circuits` app.

Each feature registers its commands on `app` from its own module, imported below.
"""

from __future__ import annotations

import typer

app = typer.Typer()

from ingest import cli_masks, cli_pipeline, cli_train  # noqa: E402,F401  (registers commands)
