"""`circuits concept describe NAME TEXT`: set a concept's description (shown by `circuits serve`)."""

from __future__ import annotations

from typing import Annotated

import typer

from circuits.cli.options import DbOption

app = typer.Typer()
concept_app = typer.Typer(help="Describe the catalog's concepts.", no_args_is_help=True)
app.add_typer(concept_app, name="concept")


@concept_app.command()
def describe(
    name: Annotated[str, typer.Argument(help="The concept's name (see `circuits list concepts`).")],
    text: Annotated[str, typer.Argument(help="One line describing it (empty text clears it).")],
    db: DbOption = None,
) -> None:
    """Set a concept's description; the web view and reports show it."""
    from catalog import store
    from catalog.engine import open_catalog

    cat = open_catalog(db)
    with cat.session() as s, s.begin():
        store.describe_concept(s, name, text)
    typer.echo(f"concept {name}: {text.strip() or '(no description)'}")
