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
    out: Annotated[
        Path,
        typer.Option(
            "-o",
            "--out",
            help="File to write: *.pt or *.safetensors (baked weights, else OUT.pt2 + OUT.onnx), or *.pt2 / *.onnx.",
        ),
    ],
    weights: Annotated[
        str | None, typer.Option("--weights", help="Weights file the circuit was found on (default: bundled/cached).")
    ] = None,
) -> None:
    """Write the model pruned by a mask: baked weights where that is exact, else a program carrying the mask.

    With a weights name (*.pt, *.safetensors) the mask is baked into a copy of the weights when every
    masked channel can be zeroed by editing weights; otherwise (a residual stream, an edge mask)
    OUT.pt2 (torch.export, loads with torch alone) and OUT.onnx (with the [export] extra, checked
    with onnxruntime) are written instead. Name -o *.pt2 or *.onnx to ask for those directly.
    """
    from circuits.cli.validate import check_output_path, model_file
    from ingest.edit.deploy import PROGRAM_SUFFIXES, WEIGHT_SUFFIXES, apply_to_file

    # before any work; the bundled/cached weights loaded when --weights is not given count as inputs
    inputs = (weights, mask, model_file(model))
    check_output_path(out, suffixes=WEIGHT_SUFFIXES + PROGRAM_SUFFIXES, inputs=inputs, what="-o")
    for sibling in (".pt2", ".onnx"):  # a fallback program is written beside -o
        check_output_path(out.with_suffix(sibling), suffixes=PROGRAM_SUFFIXES, inputs=inputs, what="-o")
    done = apply_to_file(model, mask, out, weights=weights)
    m = done.mask
    n = sum(len(mm.channels) for mm in m.modules.values())
    what = f"{n} channels of {len(m.modules)} modules pruned" if m.kind == "circuit" else "edge-pruned"
    if done.baked is not None:
        b = done.baked
        typer.echo(f"wrote {b.path}: {done.model} state dict ({done.weights_source}) with {what}")
        typer.echo(f"  kind: baked weights, because {done.reason}")
        for path, route in b.plan.routes.items():
            how = "zeroed the weights that make them" if route == "producer" else "zeroed the weights that read them"
            typer.echo(f"  {path}: {len(m.modules[path].channels)} channels, {how}")
        typer.echo(
            f"  {len(b.plan.params())} tensors edited; baked vs hook-pruned on a random batch: "
            f"max |diff| = {b.max_abs_diff:.3g}"
        )
        typer.echo(f"load it: model.load_state_dict(torch.load({str(b.path)!r}, weights_only=True))")
        return
    names = " and ".join(f"{c.path} ({c.kind})" for c in done.programs)
    typer.echo(f"wrote {names}: {done.model} ({done.weights_source}) with {what}, the mask inside the graph")
    typer.echo(f"  kind: masked program, because {done.reason}")
    for c in done.programs:
        typer.echo(f"  {c.path.name} vs hook-pruned on a random batch: max |diff| = {c.max_abs_diff:.3g}")
    if done.onnx_skipped:
        typer.echo(f"  no ONNX file: {done.onnx_skipped}")
    pt2 = done.programs[0].path
    typer.echo(f"load it (torch only): torch.export.load({str(pt2)!r}).module()(images)")
    if len(done.programs) > 1:
        onnx = str(done.programs[1].path)
        typer.echo(f"or: onnxruntime.InferenceSession({onnx!r}).run(None, {{'x': images.numpy()}})[0]")
