"""`circuits db init|upgrade|status` and `circuits sql`: thin wrappers over `catalog.admin` and
`catalog.sql`. Shared options live in `circuits.cli.options`, rendering in `circuits.cli.render`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from circuits.cli.options import DbOption, FormatOption, OutputFormat

app = typer.Typer()
db_app = typer.Typer(help="Create, upgrade and inspect the catalog database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("init")
def db_init(db: DbOption = None) -> None:
    """Create a catalog (a new DuckDB file or an empty database) at the current schema."""
    from catalog.admin import init_catalog

    before = init_catalog(db)
    if before.state == "empty":
        typer.echo(f"created catalog {before.display} (schema {before.head})")
    else:
        typer.echo(f"catalog {before.display} already exists at schema {before.current}")


@db_app.command("upgrade")
def db_upgrade(
    db: DbOption = None,
    backup: Annotated[bool, typer.Option("--backup/--no-backup", help="Copy a DuckDB file before changing it.")] = True,
) -> None:
    """Upgrade a catalog's schema to the version this program expects (backing the file up)."""
    from catalog.admin import upgrade_catalog

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
    from catalog.admin import catalog_status

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
    limit: Annotated[int, typer.Option("--limit", help="Print at most this many rows (0: all).", min=0)] = 10_000,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Stop the query after this many seconds (0: no limit).", min=0)
    ] = 60.0,
    allow_superuser: Annotated[
        bool,
        typer.Option(
            "--allow-superuser",
            help="PostgreSQL: run even as a superuser (only if you trust the query; see README, Bad input).",
        ),
    ] = False,
    memory_limit: Annotated[
        str | None,
        typer.Option("--memory-limit", help="DuckDB memory cap, e.g. 2GB (default: half the memory, at most 4 GB)."),
    ] = None,
    max_bytes: Annotated[
        str,
        typer.Option("--max-bytes", help="Stop with an error when the result passes this size, e.g. 100MB, 1GB."),
    ] = "100MB",
) -> None:
    """Run read-only SQL on the catalog (tables and the *_v views); writes are refused.

    Several statements separated by `;` run in order; the last one's rows are printed. The query
    runs in a sandbox: read-only, no file access, a time limit and a memory cap, no spill files;
    on PostgreSQL only as a role that cannot run programs or read server files.
    """
    from catalog.sql import run_sql
    from catalog.sql_limits import address_space_cap, address_space_capped, parse_size
    from circuits.cli.render import render

    cap = parse_size(max_bytes)
    if memory_limit is not None:
        parse_size(memory_limit, "--memory-limit")
    with address_space_capped(address_space_cap(memory_limit, cap)):
        result = run_sql(
            db,
            query,
            max_rows=limit or None,
            max_bytes=cap,
            timeout_s=timeout or None,
            memory_limit=memory_limit,
            allow_superuser=True if allow_superuser else None,
        )
    rows = [dict(zip(result.columns, row)) for row in result.rows]
    typer.echo(render(rows, fmt.value, list(result.columns)))
    if result.truncated:
        typer.echo(f"(first {limit} rows shown; --limit 0 prints all)", err=True)


@db_app.command("vacuum")
def db_vacuum(db: DbOption = None) -> None:
    """Give unused space back: compact a DuckDB file (it needs the file to itself), or VACUUM (ANALYZE) PostgreSQL."""
    from catalog.vacuum import vacuum_catalog

    typer.echo(vacuum_catalog(db).describe())
