"""Options shared by every command, so they look and validate the same everywhere.

`DbOption` (the `--db` option), `FormatOption`/`OutputFormat` (`--format table|csv|json`) and the
Typer choice enums derived from the project's vocabulary (`catalog.vocab`). Rendering of the
results is `circuits.cli.render`; the missing-extra message is `circuits.cli.extras`.
"""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from catalog.vocab import InterventionKind, RunStatus

__all__ = ["DbOption", "FormatOption", "InterventionKind", "OutputFormat", "RunStatus"]

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Catalog: a DuckDB file or a database URL (default: $CIRCUITS_DB, else ./circuits.duckdb).",
        show_default=False,
    ),
]


class OutputFormat(str, enum.Enum):
    """How tabular results are printed."""

    table = "table"
    csv = "csv"
    json = "json"


FormatOption = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format: table, csv or json.")]
