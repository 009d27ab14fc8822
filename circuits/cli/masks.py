"""`circuits apply`: bake a pruning mask into a copy of a model's weights (a thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()


@app.command("apply")
def apply(
    model: Annotated[
        str, typer.Argument(help="The model the mask was made for: a zoo name or path/to/file.py:factory.")
    ],
    mask: Annotated[Path, typer.Option("--mask", help="Mask file from `circuits export` (*.json or *.safetensors).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="State dict to write (*.pt, or *.safetensors).")],
    weights: Annotated[
        str | None, typer.Option("--weights", help="Weights file the circuit was found on (default: bundled/cached).")
    ] = None,
) -> None:
    """Bake a circuit mask into a copy of the model's weights: a plain model loading them behaves as pruned."""
    from circuits.cli.validate import check_output_path
    from ingest.edit.mask_apply import bake_to_file

    check_output_path(out, suffixes=(".pt", ".pth", ".bin", ".safetensors"), inputs=(weights, mask), what="-o")
    done = bake_to_file(model, mask, out, weights=weights)
    m = done.mask
    n = sum(len(mm.channels) for mm in m.modules.values())
    typer.echo(
        f"wrote {done.path}: {done.model} state dict ({done.weights_source}) with {n} channels of "
        f"{len(m.modules)} modules pruned"
    )
    for path, route in done.plan.routes.items():
        how = {
            "producer": "zeroed the weights that make them",
            "transformer": "zeroed their slices of the output projection"
            if path.endswith(":heads")
            else "zeroed their fc1 rows and fc2 columns",
        }.get(route, "zeroed the weights that read them")
        typer.echo(f"  {path}: {len(m.modules[path].channels)} channels, {how}")
    typer.echo(
        f"  {len(done.plan.params())} tensors edited; baked vs hook-pruned on a random batch: max |diff| = {done.max_abs_diff:.3g}"
    )
    typer.echo(f"load it: model.load_state_dict(torch.load({str(done.path)!r}, weights_only=True))")
