"""Commands of the `catalog` package (`circuits db …`, `circuits sql`), mounted by the root app."""

from __future__ import annotations

import typer

app = typer.Typer()
