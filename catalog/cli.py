"""Commands of the `catalog` package (`circuits db …`, `circuits sql`), mounted by the root app.

Also the shared pieces other packages' commands use for the same look: `DbOption` (the `--db`
option), `FormatOption`/`OutputFormat` (`--format table|csv|json`) and `print_rows`.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

import typer

app = typer.Typer()
db_app = typer.Typer(
    help="Create, upgrade and inspect the catalog database.", no_args_is_help=True
)
app.add_typer(db_app, name="db")

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


FormatOption = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="Output format: table, csv or json.")
]


@db_app.command("init")
def db_init(db: DbOption = None) -> None:
    """Create a catalog (a new DuckDB file or an empty database) at the current schema."""
    from catalog.migrations.admin import init_catalog

    before = init_catalog(db)
    if before.state == "empty":
        typer.echo(f"created catalog {before.display} (schema {before.head})")
    else:
        typer.echo(f"catalog {before.display} already exists at schema {before.current}")


@db_app.command("upgrade")
def db_upgrade(
    db: DbOption = None,
    backup: Annotated[
        bool, typer.Option("--backup/--no-backup", help="Copy a DuckDB file before changing it.")
    ] = True,
) -> None:
    """Upgrade a catalog's schema to the version this program expects (backing the file up)."""
    from catalog.migrations.admin import upgrade_catalog

    result = upgrade_catalog(db, backup=backup)
    if result.before == result.after:
        typer.echo(f"catalog {result.display} is up to date (schema {result.after})")
        return
    if result.backup is not None:
        typer.echo(f"backed up to {result.backup}")
    how = "marked as" if result.stamped else "upgraded to"
    typer.echo(f"catalog {result.display} {how} schema {result.after} (was {result.before or 'none'})")


@db_app.command("status")
def db_status(db: DbOption = None) -> None:
    """Print the catalog's schema revision and the one this program expects."""
    from catalog.migrations.admin import catalog_status

    status = catalog_status(db)
    typer.echo(f"catalog:  {status.display}")
    typer.echo(f"current:  {status.current or 'none'}")
    typer.echo(f"head:     {status.head}")
    typer.echo(f"state:    {status.state}")
    if status.state in ("outdated", "foreign"):
        typer.echo(f"next:     circuits db upgrade --db {status.display}")
    elif status.state == "empty":
        typer.echo(f"next:     circuits db init --db {status.display}")


@app.command("sql")
def sql(
    query: Annotated[str, typer.Argument(help="SQL to run; the catalog is opened read-only.")],
    db: DbOption = None,
    fmt: FormatOption = OutputFormat.table,
    limit: Annotated[
        int, typer.Option("--limit", help="Print at most this many rows (0: all).", min=0)
    ] = 10_000,
) -> None:
    """Run read-only SQL on the catalog (tables and the *_v views); writes are refused."""
    from catalog.engine import open_catalog
    from catalog.sql import run_query

    cat = open_catalog(db, read_only=True)
    result = run_query(cat, query, max_rows=limit or None)
    print_rows(result.columns, result.rows, fmt)
    if result.truncated:
        typer.echo(f"(first {limit} rows shown; --limit 0 prints all)", err=True)


def print_rows(
    columns: tuple[str, ...] | list[str], rows: list[tuple[Any, ...]], fmt: OutputFormat
) -> None:
    """Print rows to stdout as a rich table, CSV, or a JSON list of objects.

    Args:
        columns: column names.
        rows: tuples of Python values (dates, decimals, lists and dicts are converted).
        fmt: the output format.
    """
    import csv
    import json
    import sys

    if fmt == OutputFormat.json:
        objects = [{c: _jsonable(v) for c, v in zip(columns, row)} for row in rows]
        typer.echo(json.dumps(objects, indent=2, allow_nan=False))
    elif fmt == OutputFormat.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_text(v, null="") for v in row] for row in rows)
    else:
        from rich.console import Console
        from rich.table import Table

        cells = [[_text(v, null="NULL") for v in row] for row in rows]
        table = Table(show_lines=False)
        for name in columns:
            table.add_column(name, min_width=len(name), overflow="fold")  # headers never elided
        for row in cells:
            table.add_row(*row)
        console = Console()
        if not console.is_terminal:  # piped: as wide as the table needs, never wrapped
            widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
            console = Console(width=max(console.width, sum(widths) + 3 * len(widths) + 1))
        console.print(table)


def _jsonable(value: Any) -> Any:
    import datetime as dt
    import decimal
    import math

    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _text(value: Any, *, null: str) -> str:
    import json

    if value is None:
        return null
    if isinstance(value, dict | list | tuple):
        return json.dumps(_jsonable(value))
    return str(_jsonable(value))
