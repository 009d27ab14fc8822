"""`circuits export`: write a catalogued circuit as a portable pruning mask (a thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from circuits.cli.options import CircuitModelOption, DbOption, InterventionKind

app = typer.Typer()


@app.command("export")
def export(
    circuit: Annotated[str, typer.Argument(help="Circuit id, or a concept name (its newest circuit).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Mask file to write: *.json or *.safetensors.")],
    kind: Annotated[
        InterventionKind, typer.Option("--kind", help="circuit: zero every circuit neuron; edge: cut one layer pair.")
    ] = InterventionKind.circuit,
    pair: Annotated[
        int, typer.Option("--pair", help="Edge masks: cut circuit layer I → I+1 (default the first two).")
    ] = 0,
    model: CircuitModelOption = None,
    prune_anchor: Annotated[
        bool, typer.Option("--prune-anchor", help="Keep an anchored circuit's anchor (class logit) in the mask.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Write a circuit as a pruning mask (module path → channels, with the weights' sha256) for `circuits apply`."""
    from catalog.engine import open_catalog
    from circuits.cli.validate import catalog_files, check_output_path
    from queries.listing import resolve_circuit
    from queries.mask_export import export_mask

    check_output_path(out, suffixes=(".json", ".safetensors"), inputs=catalog_files(db), what="-o")  # before anything
    cat = open_catalog(db, read_only=True)
    with cat.session() as s:
        circuit_id = resolve_circuit(s, circuit, model).circuit_id
    result = export_mask(cat, circuit_id, out, kind=kind.value, pair=pair, prune_anchor=prune_anchor)
    mask = result.mask
    typer.echo(f"wrote {result.path} ({result.format}): {mask.describe()}")
    typer.echo(
        f"  from circuit {circuit_id} (run {mask.source.run_id}, concept {mask.source.concept}) in {mask.source.catalog}"
    )
    for path, mm in mask.modules.items():
        typer.echo(f"  {path}: {len(mm.channels)} of {mm.width} channels {list(mm.channels)}")
    from queries.suggest import apply_command

    run_id = mask.source.run_id
    assert run_id is not None, "a mask exported from the catalog names its run"
    with cat.session() as s:
        if kind is InterventionKind.circuit:
            command = apply_command(s, run_id, str(result.path))
            how = "baked weights where exact, else pruned.pt2 + pruned.onnx carrying the mask"
        else:  # edge pruning needs a second forward pass: only a program can carry it
            command = apply_command(s, run_id, str(result.path), out="pruned.pt2")
            how = "an edge mask needs two forward passes: a torch.export program (+ ONNX) that carries it"
    typer.echo(f"apply it ({how}): {command}")
