"""`circuits apply`: bake a pruning mask into a copy of a model's weights (a thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from circuits.cli.options import timeout_option

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
    timeout: Annotated[float, timeout_option("forward pass on the check images")] = 0,
) -> None:
    """Write the model pruned by a mask: baked weights where that is exact, else a program carrying the mask.

    With a weights name (*.pt, *.safetensors) the mask is baked into a copy of the weights when every
    masked channel can be zeroed by editing weights; otherwise (a residual stream, an edge mask)
    OUT.pt2 (torch.export, loads with torch alone) and OUT.onnx (with the [export] extra, checked
    with onnxruntime) are written instead. Name -o *.pt2 or *.onnx to ask for those directly.
    """
    from circuits.cli.render import cli_message  # library text names parameters; here, flags
    from circuits.cli.validate import check_output_path, model_file
    from ingest.edit.deploy import PROGRAM_SUFFIXES, WEIGHT_SUFFIXES, apply_to_file

    # before any work; the bundled/cached weights loaded when --weights is not given count as inputs
    inputs = (weights, mask, model_file(model))
    check_output_path(out, suffixes=WEIGHT_SUFFIXES + PROGRAM_SUFFIXES, inputs=inputs, what="-o")
    for sibling in (".pt2", ".onnx"):  # a fallback program is written beside -o
        check_output_path(out.with_suffix(sibling), suffixes=PROGRAM_SUFFIXES, inputs=inputs, what="-o")
    from ingest.user_code import set_forward_timeout

    set_forward_timeout(timeout)
    checked = {"what": "a random batch"}
    done = apply_to_file(model, mask, out, weights=weights, images=_run_images(checked))
    m = done.mask
    n = sum(len(mm.channels) for mm in m.modules.values())
    what = f"{n} channels of {len(m.modules)} modules pruned" if m.kind == "circuit" else "edge-pruned"
    if done.baked is not None:
        b = done.baked
        typer.echo(f"wrote {b.path}: {done.model} state dict ({done.weights_source}) with {what}")
        typer.echo(f"  kind: baked weights, because {cli_message(done.reason, 'apply')}")
        for path, route in b.plan.routes.items():
            how = {
                "producer": "zeroed the weights that make them",
                "transformer": "zeroed their slices of the output projection"
                if path.endswith(":heads")
                else "zeroed their fc1 rows and fc2 columns",
            }.get(route, "zeroed the weights that read them")
            typer.echo(f"  {path}: {len(m.modules[path].channels)} channels, {how}")
        typer.echo(
            f"  {len(b.plan.params())} tensors edited; baked vs hook-pruned on {checked['what']}: "
            f"max |diff| = {b.max_abs_diff:.3g}"
        )
        typer.echo(f"load it: model.load_state_dict(torch.load({str(b.path)!r}, weights_only=True))")
        return
    names = " and ".join(f"{c.path} ({c.kind})" for c in done.programs)
    typer.echo(f"wrote {names}: {done.model} ({done.weights_source}) with {what}, the mask inside the graph")
    typer.echo(f"  kind: masked program, because {cli_message(done.reason, 'apply')}")
    for c in done.programs:
        note = f" ({c.note})" if c.note else ""
        typer.echo(f"  {c.path.name} vs hook-pruned on {checked['what']}: max |diff| = {c.max_abs_diff:.3g}{note}")
    if done.onnx_skipped:
        typer.echo(f"  no ONNX file: {done.onnx_skipped}")
    pt2 = done.programs[0].path
    typer.echo(f"load it (torch only): torch.export.load({str(pt2)!r}).module()(images)")
    if len(done.programs) > 1:
        onnx = str(done.programs[1].path)
        typer.echo(f"or: onnxruntime.InferenceSession({onnx!r}).run(None, {{'x': images.numpy()}})[0]")


def _run_images(checked: dict[str, str]):
    """The check batch `apply` uses: up to 8 images of the run the mask came from, fed as that run
    fed them (its catalog and images as recorded in the mask); None (a random batch) when they
    cannot be read here. `checked["what"]` says which was used."""

    def images(mask, pp):
        import shlex

        from catalog import store
        from catalog.engine import open_catalog
        from catalog.errors import CircuitsError
        from ingest import zoo
        from ingest.image_sets import resolve_images
        from ingest.zoo.preprocessing import Preprocessing
        from queries.suggest import images_for_run

        src = mask.source
        if not src.catalog or src.run_id is None:
            return None
        try:
            cat = open_catalog(src.catalog, read_only=True)
            try:
                with cat.session() as s:
                    how = shlex.split(images_for_run(s, src.run_id))
                    stored = store.read_run(s, src.run_id).params.get("preprocessing")
            finally:
                cat.close()
            option, value = how[0], how[1]
            found = resolve_images(
                images=value if option == "--images" else None, dataset=value if option == "--dataset" else None, n=8
            )
            x = zoo.preprocess(Preprocessing.from_params(stored) if stored else pp, list(found.images)[:8])
        except (CircuitsError, OSError, ValueError, RuntimeError):  # not readable here: a random batch instead
            return None
        checked["what"] = f"{len(x)} images of run {src.run_id} ({' '.join(how)})"
        return x

    return images
