"""`circuits ingest`, `circuits refine` and `circuits ablate`: thin wrappers over the pipeline."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from circuits.cli.options import (
    DbOption,
    DeviceOption,
    FormatOption,
    InterventionKind,
    OutputFormat,
    ThreadsOption,
    TimeoutOption,
    comma_list,
)
from circuits.cli.render import progress_bar

app = typer.Typer()

DatasetOpt = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        help="A bundled image set: catfish:stripes (a primitive), catfish:stripes_star (a class), typo:SET, or photo:cat (views of a walkthrough photograph).",
    ),
]
NOpt = Annotated[int, typer.Option("--n", help="Number of images rendered for --dataset.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the images rendered for --dataset.")]
ImagesOpt = Annotated[str | None, typer.Option("--images", help="Folder of images (PNG, JPEG, WebP, BMP, GIF, TIFF).")]
RecursiveOpt = Annotated[bool, typer.Option("--recursive", help="Read the --images folder's sub-folders too.")]
InputSizeOpt = Annotated[
    str | None,
    typer.Option(
        "--input-size", help="Model input side in pixels, or keep (each image's own size). Default: the model's."
    ),
]
ResizeOpt = Annotated[
    str | None,
    typer.Option(
        "--resize", help="crop (shorter side to --input-size, then the centre) or stretch. Default: the model's."
    ),
]
NormalizeOpt = Annotated[
    str | None,
    typer.Option(
        "--normalize",
        help="none, imagenet, or MEAN:STD as comma lists (0.5,0.5,0.5:0.25,0.25,0.25). Default: the model's.",
    ),
]
ChannelsOpt = Annotated[int | None, typer.Option("--channels", help="1 (grey) or 3 (RGB). Default: the model's.")]


def classes_option(named: str) -> Any:
    """The `--classes` option of a command whose `named` option may name a class."""
    return typer.Option(
        "--classes", help=f"File of class names by logit index (one per line, or a JSON list), for {named} by name."
    )


def _echo_image_report(image_set) -> None:
    """One summary line for the files not used, and one line per note (stderr)."""
    from circuits.cli.render import cli_message  # library text names parameters; here, flags

    for note in image_set.notes:
        typer.echo(f"note: {cli_message(note)}", err=True)
    summary = image_set.summary()
    if summary:
        typer.echo(cli_message(summary), err=True)


@app.command()
def ingest(
    model: Annotated[str, typer.Argument(help="A zoo name (see `circuits models`) or path/to/file.py:factory.")],
    concept: Annotated[str | None, typer.Option("--concept", help="Name of the concept the images show.")] = None,
    images: ImagesOpt = None,
    dataset: DatasetOpt = None,
    recursive: RecursiveOpt = False,
    n: NOpt = 32,
    seed: SeedOpt = 0,
    layers: Annotated[
        str | None,
        typer.Option(
            "--layers",
            help="Comma-separated dotted module names, forward order (PATH:heads: an attention module's heads); "
            "help: list the model's candidate layers.",
        ),
    ] = None,
    k: Annotated[str, typer.Option("--k", help="Circuit neurons per layer: one integer or one per layer.")] = "5",
    tokens: Annotated[
        str, typer.Option("--tokens", help="Token models: which tokens count, all, patches or cls.")
    ] = "all",
    anchor: Annotated[
        str | None,
        typer.Option(
            "--anchor",
            help="Anchor the circuit on this class (a name or a logit index): the last of --layers must be the "
            "class layer, and its circuit is that one logit.",
        ),
    ] = None,
    classes: Annotated[str | None, classes_option("--anchor")] = None,
    weights: Annotated[str | None, typer.Option("--weights", help="Local weights file (state dict).")] = None,
    input_size: InputSizeOpt = None,
    resize: ResizeOpt = None,
    normalize: NormalizeOpt = None,
    channels: ChannelsOpt = None,
    device: DeviceOption = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 16,
    force: Annotated[bool, typer.Option("--force", help="Recompute even if an identical run exists.")] = False,
    threads: ThreadsOption = None,
    timeout: TimeoutOption = 0,
    db: DbOption = None,
) -> None:
    """Run Cross-Layer Attribution for a model and a concept, and store the run and its circuit.

    Images are fed as the model's spec says (zoo models: their published preprocessing; a user
    model that declares none: [0, 1] RGB at the images' own size); --input-size, --resize,
    --normalize and --channels override it, and the run records what was used. With --anchor
    CLASS a second circuit is stored whose last layer is fixed to that class's logit (the class
    layer must end --layers); class names label the class layer's neurons in every view.
    """
    from catalog.engine import open_catalog
    from catalog.names import check_concept_name
    from catalog.sizes import BadK, parse_k
    from circuits.cli.validate import check_batch_size, check_device, new_catalog_guard
    from ingest.cla.tokens import check_tokens
    from ingest.image_sets import resolve_images
    from ingest.pipeline import IngestConfig, ingest_concept
    from ingest.threads import configure

    if layers is not None and layers.strip() == "help":
        _echo_layer_help(model, weights)
        return
    if concept is None:
        from circuits.cli.validate import InputError

        raise InputError("--concept is required: name the concept the images show (or pass --layers help)")
    check_tokens(tokens)
    check_concept_name(concept)  # everything that can be checked, before any side effect
    check_batch_size(batch_size)
    check_device(device)
    k_value = parse_k(k)
    layer_list = None if layers is None else tuple(comma_list(layers))
    if layer_list is not None and isinstance(k_value, tuple) and len(k_value) != len(layer_list):
        raise BadK(f"--k has {len(k_value)} values but --layers names {len(layer_list)}: give one k or one per layer")
    from ingest.zoo.user import read_class_names

    class_names = None if classes is None else read_class_names(classes)
    plan = None if anchor is None else _plan_anchor(model, layer_list, anchor, class_names, input_size)
    image_set = resolve_images(images=images, dataset=dataset, n=n, seed=seed, recursive=recursive)
    _echo_image_report(image_set)
    config = IngestConfig(
        model=model,
        concept=concept,
        layers=layer_list,
        k=k_value,
        weights=weights,
        device=device,
        batch_size=batch_size,
        force=force,
        input_size=input_size,
        resize=resize,
        normalize=normalize,
        channels=channels,
        tokens=tokens,
    )
    from ingest.user_code import set_forward_timeout

    set_forward_timeout(timeout)
    configure(threads)  # the command's process: threads for the free CPUs (ingest.threads)
    with new_catalog_guard(db):  # a catalog created here is removed again if nothing was stored
        cat = open_catalog(db, create=True, wait=None)  # a reader holding a DuckDB file: wait for it
        with progress_bar() as update:
            result = ingest_concept(cat, config, image_set, progress=update)
    verb = "reused run" if result.reused else "stored run"
    typer.echo(
        f"{verb} {result.run_id} ({result.n_images} images, {result.seconds:.1f} s) "
        f"and circuit {result.circuit_id} in {cat.display}"
    )
    typer.echo(f"inputs: {result.preprocessing}")
    from ingest.anchor import anchor_circuit, label_class_layer

    names = class_names if class_names is not None else (plan.names if plan is not None else None)
    if names:
        label_class_layer(cat, result.run_id, names)
    if plan is not None:
        circuit_id, circuit = anchor_circuit(cat, result.run_id, k_value, plan.anchor)
        typer.echo(
            f"anchored circuit {circuit_id} on {plan.anchor}: k={','.join(map(str, circuit.k))}, "
            f"{circuit.sweeps} sweeps, objective {circuit.objective:.4g} (its anchor is never pruned by `ablate`)"
        )


def _plan_anchor(model: str, layers, anchor: str, class_names, input_size):
    """Check --anchor against the model before anything is computed or written (a model built
    with any weights: only its shapes are read)."""
    import warnings
    from types import SimpleNamespace

    from ingest import zoo
    from ingest.anchor import plan_anchor
    from ingest.zoo.preprocessing import parse_input_size

    spec = zoo.get_spec(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = spec.build().eval()
    size = parse_input_size(input_size) if input_size is not None else None
    example = spec.pp.example(1, size=size or 224)
    names = class_names if class_names is not None else spec.labels
    plan = plan_anchor(module, list(layers or spec.layers), anchor, names, example)
    return SimpleNamespace(anchor=plan, names=names)


def _echo_layer_help(model: str, weights: str | None) -> None:
    """`--layers help`: the model's candidate layers (`ingest.cla.layer_help`), one per line."""
    from ingest.cla.layer_help import candidate_layers
    from ingest.zoo import get_spec

    spec = get_spec(model)
    for row in candidate_layers(spec.build()):  # names only: the random init is never used
        typer.echo(f"{row.name:<60} {row.kind:<14} {row.units}")
    if spec.layers:
        typer.echo(f"default: --layers {','.join(spec.layers)}")


@app.command()
def refine(
    run: Annotated[
        str, typer.Argument(help="Run id, or a concept name (its newest complete run; see `circuits list runs`).")
    ],
    k: Annotated[str, typer.Option("--k", help="Neurons per layer: one integer or one per layer.")],
    model: Annotated[
        str | None, typer.Option("--model", help="Model, when RUN is a concept with runs on several models.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Make a circuit of another size from a run's stored edges alone (no model, no GPU).

    The same run and k again gives back the stored circuit instead of a second identical one.
    """
    from catalog import store
    from catalog.engine import open_catalog
    from catalog.sizes import k_per_layer, parse_k
    from ingest.refinement import refine as run_refine
    from queries.resolve import resolve_run

    k_value = parse_k(k)
    cat = open_catalog(db)
    with cat.session() as s:
        run_id = resolve_run(s, run, model)
        info = store.read_run(s, run_id)
        ks = k_per_layer(k_value, info.layer_names, info.widths)  # a bad k is refused before writing
        same = [c for c in store.find_circuits(s, run_id=run_id) if list(c.k) == ks and not c.fixed]
    if same:
        typer.echo(f"circuit {same[0].id} of run {run_id} already has k={','.join(map(str, ks))}: nothing new stored")
        return
    circuit_id, circuit = run_refine(cat, run_id, k_value)
    state = "converged" if circuit.converged else "did not converge"
    typer.echo(
        f"stored circuit {circuit_id} of run {run_id}: {circuit.sweeps} sweeps, {state}, objective {circuit.objective:.4g}"
    )


@app.command()
def ablate(
    circuit: Annotated[
        str, typer.Argument(help="Circuit id, or a concept name (its newest circuit; see `circuits list circuits`).")
    ],
    kind: Annotated[
        InterventionKind,
        typer.Option("--kind", help="circuit: zero every circuit neuron; edge: cut one circuit layer pair (--pair)."),
    ] = InterventionKind.circuit,
    pair: Annotated[int, typer.Option("--pair", help="Edge pruning: index of the circuit layer pair to cut.")] = 0,
    prune_anchor: Annotated[
        bool,
        typer.Option("--prune-anchor", help="Prune an anchored circuit's anchor (its class logit) too."),
    ] = False,
    baseline_seed: Annotated[int, typer.Option("--baseline-seed", help="Seed of the random baseline circuit.")] = 0,
    images: ImagesOpt = None,
    dataset: DatasetOpt = None,
    recursive: RecursiveOpt = False,
    label: Annotated[str | None, typer.Option("--label", help="True class of the --images folder.")] = None,
    classes: Annotated[str | None, classes_option("--label")] = None,
    n: NOpt = 64,
    seed: SeedOpt = 1,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A user model's code, path/to/file.py:factory (a catalog's stored model code is never run); zoo models need none.",
        ),
    ] = None,
    input_size: InputSizeOpt = None,
    resize: ResizeOpt = None,
    normalize: NormalizeOpt = None,
    channels: ChannelsOpt = None,
    weights: Annotated[str | None, typer.Option("--weights", help="Weights the circuit was found with.")] = None,
    device: DeviceOption = "auto",
    force: Annotated[
        bool, typer.Option("--force", help="Evaluate again even if the same evaluation is stored.")
    ] = False,
    threads: ThreadsOption = None,
    timeout: TimeoutOption = 0,
    db: DbOption = None,
) -> None:
    """Prune a circuit, evaluate it beside a random circuit of the same shape, and store the result.

    Images are fed with the preprocessing the circuit's run used (stored in its provenance);
    --input-size, --resize, --normalize and --channels override it. An anchored circuit's anchor
    (its class logit) is not pruned unless --prune-anchor.
    """
    from catalog.engine import open_catalog
    from circuits.cli.validate import check_device
    from ingest.ablation import ablate as run_ablate
    from ingest.image_sets import resolve_images
    from ingest.refinement import run_preprocessing
    from ingest.threads import configure
    from ingest.zoo.user import read_class_names
    from queries.resolve import resolve_circuit

    check_device(device)
    from ingest.user_code import set_forward_timeout

    set_forward_timeout(timeout)
    class_names = None if classes is None else read_class_names(classes)
    image_set = resolve_images(images=images, dataset=dataset, n=n, seed=seed, recursive=recursive)
    _echo_image_report(image_set)
    configure(threads)  # the command's process: threads for the free CPUs (ingest.threads)
    cat = open_catalog(db)
    with cat.session() as s:
        circuit_id = resolve_circuit(s, circuit, model, model_optional=True).circuit_id
    pp = run_preprocessing(
        cat, circuit_id, input_size=input_size, resize=resize, normalize=normalize, channels=channels
    )
    r = run_ablate(
        cat,
        circuit_id,
        image_set,
        kind=kind.value,
        label=label,
        weights=weights,
        pair=pair,
        baseline_seed=baseline_seed,
        device=device,
        force=force,
        preprocessing=pp,
        class_names=class_names,
        model=model,
        prune_anchor=prune_anchor,
    )
    for warning in r.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(
        f"{'reused stored ' if r.reused else ''}intervention {r.intervention_id}: {r.kind} pruning of circuit {r.circuit_id} on {r.image_set} "
        f"({r.n_images} images; {100 * r.edge_fraction:.2f}% of edges cut)"
    )
    typer.echo(f"{'metric':<16} {'clean':>8} {'pruned':>8} {'random':>8}")
    for m in r.clean:
        typer.echo(f"{m:<16} {r.clean[m]:>8.3f} {r.intervened[m]:>8.3f} {r.baseline[m]:>8.3f}")


@app.command()
def models(
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List the model zoo: names, default CLA layers, input size and where weights would come from."""
    from circuits.cli.render import render
    from ingest import zoo

    rows = []
    for name in zoo.available_models():
        spec = zoo.get_spec(name)
        rows.append(
            {
                "name": name,
                "architecture": spec.architecture,
                "layers": ",".join(spec.layers),
                "input_size": spec.input_size or "keep",
                "preprocessing": spec.pp.describe(),
                "bundled_weights": str(spec.default_weights) if spec.default_weights else "",
            }
        )
    typer.echo(render(rows, fmt.value))
