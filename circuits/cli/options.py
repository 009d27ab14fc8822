"""Options shared by every command, so they look and validate the same everywhere.

`DbOption` (the `--db` option), `FormatOption`/`OutputFormat` (`--format table|csv|json`), the
options several commands share with one meaning (`DeviceOption`, `CircuitModelOption`,
`ThreadsOption`, `TimeoutOption`, `timeout_option`), the reading of a comma-separated option
(`comma_list`) and the Typer choice enums derived from the project's vocabulary (`catalog.vocab`). Rendering of the
results is `circuits.cli.render`; the missing-extra message is `circuits.cli.extras`.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, overload

import typer

from catalog.vocab import InterventionKind, RunStatus

__all__ = [
    "CircuitModelOption",
    "DbOption",
    "DeviceOption",
    "FormatOption",
    "InterventionKind",
    "OutputFormat",
    "RunStatus",
    "ThreadsOption",
    "TimeoutOption",
    "comma_list",
    "timeout_option",
]

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


DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
CircuitModelOption = Annotated[
    str | None, typer.Option("--model", help="Model, when CIRCUIT is a concept with circuits on several models.")
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads", help="CPU threads for torch. Default: free CPUs (usable CPUs minus the load average), at least 1."
    ),
]


def timeout_option(timed: str) -> Any:
    """The `--timeout` option of a command that runs a user's model; `timed` names the pass it times."""
    return typer.Option("--timeout", min=0, help=f"Refuse a model whose {timed} takes longer (s; 0: no limit).")


TimeoutOption = Annotated[float, timeout_option("first forward pass (one image)")]


@overload
def comma_list(text: str) -> list[str]: ...
@overload
def comma_list(text: None) -> None: ...
@overload
def comma_list(text: str | None) -> list[str] | None: ...
def comma_list(text: str | None) -> list[str] | None:
    """The items of a comma-separated option (`--layers a,b`, `--classes`, `--concepts`, …),
    stripped, empty ones dropped; None when the option was not given."""
    return None if text is None else [item.strip() for item in text.split(",") if item.strip()]
