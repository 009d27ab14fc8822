"""`circuits demo`: the main job on the bundled catfish-mini (a thin wrapper over `circuits.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from circuits.cli.options import DbOption

app = typer.Typer()


@app.command("demo")
def demo(
    db: DbOption = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the report (Markdown) and the overlap heat-map (PNG).")
    ] = Path("demo-out"),
) -> None:
    """Run the main job: catfish-mini circuits for every CatFish-synth concept, ablations, claims.

    Finds a circuit for every primitive and every class with the bundled catfish-mini weights,
    prunes every primitive circuit on every class beside a random circuit of the same shape, and
    reports the paper's three CatFish claims (composition, reuse, causality) with an overlap
    heat-map. Idempotent: a second run reuses what is stored.
    """
    from circuits.cli.render import progress_bar
    from circuits.cli.validate import InputError, catalog_files, check_output_path
    from circuits.demo import run_demo

    if out.exists() and not out.is_dir():  # before any work
        raise InputError(f"--out {out} is a file: give a folder for the report and the heat-map")
    if out.is_dir():  # the files it will replace must not be the catalog
        for name in ("overlap.png", "report.md"):
            check_output_path(out / name, suffixes=(Path(name).suffix,), inputs=catalog_files(db), what="--out")
    with progress_bar() as update:
        result = run_demo(db, out, progress=update)
    typer.echo("")
    for claim in result.claims:
        typer.echo(f"{claim.name:<12} {'holds' if claim.holds else 'DOES NOT HOLD'}: {claim.summary}")
    typer.echo("")
    typer.echo(f"catalog:  {result.db}")
    typer.echo(f"report:   {result.report_path}")
    typer.echo(f"heat-map: {result.heatmap_path}")
    typer.echo(
        f'finished in {result.seconds:.0f} s; try: circuits sql "select * from circuit_overlap_v order by jaccard desc limit 5"'
    )
