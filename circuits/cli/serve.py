"""`circuits serve`, `circuits report` and `circuits thumbnails`: thin wrappers over `circuits.web`
and `ingest.thumbnails`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from circuits.cli.options import CircuitModelOption, DbOption, DeviceOption
from circuits.cli.render import progress_bar

app = typer.Typer()

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result (no progress, no request log).")]


@app.command()
def serve(
    db: DbOption = None,
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port).")] = 8000,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Address to bind. Default 127.0.0.1 (this machine only); any other "
            "address must be given here explicitly.",
            show_default=False,
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Also answer requests for this host name (repeatable); by default only the bound "
            "address (and localhost) is answered, which stops other web sites reading the catalog.",
        ),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Browse a catalog in a local web page (read-only): circuits, neurons, comparisons, SQL."""
    from circuits.web.server import is_loopback, make_server

    server = make_server(
        db, host or "127.0.0.1", port, allow_remote=host is not None, quiet=quiet, allow_hosts=tuple(allow_host or ())
    )
    bound = server.server_address[0]
    assert isinstance(bound, str), "an AF_INET/AF_INET6 server's address is a str"
    where = "this machine only" if is_loopback(bound) else "reachable from other machines"
    typer.echo(f"serving {server.cat.display} read-only at {server.url} ({where}); Ctrl-C stops")
    if not is_loopback(bound) and not allow_host:
        typer.echo(
            f"answering only requests addressed to {bound}: give --allow-host NAME for each name others use",
            err=True,
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def report(
    circuit: Annotated[str, typer.Argument(help="Circuit id, or a concept name (its newest circuit).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="HTML file to write.")],
    model: CircuitModelOption = None,
    db: DbOption = None,
    quiet: QuietOpt = False,
) -> None:
    """Write a circuit's page as one self-contained HTML file (inline SVG and images, no network)."""
    from catalog.atomic import write_text_atomic
    from catalog.engine import open_catalog
    from circuits.cli.validate import catalog_files, check_output_path
    from circuits.web.pages import report_html

    check_output_path(out, suffixes=(".html", ".htm"), inputs=catalog_files(db), what="-o")  # before any work
    cat = open_catalog(db, read_only=True)
    circuit_id, html = report_html(cat, circuit, model)
    write_text_atomic(out, html)  # whole or not at all
    if not quiet:
        typer.echo(f"wrote {out} ({len(html.encode()) // 1024} KiB): circuit {circuit_id}, open it in any browser")
    else:
        typer.echo(str(out))


@app.command()
def thumbnails(
    run: Annotated[
        str, typer.Argument(help="Run id, or a concept name (its newest complete run; see `circuits list runs`).")
    ],
    model: Annotated[str, typer.Argument(help="The run's model: a zoo name or path/to/file.py:factory.")],
    weights: Annotated[str | None, typer.Option("--weights", help="Weights the run was computed with.")] = None,
    device: DeviceOption = "auto",
    top: Annotated[int, typer.Option("--top", min=1, max=16, help="Patches per neuron.")] = 4,
    size: Annotated[int, typer.Option("--size", min=16, max=128, help="Patch side in pixels.")] = 64,
    featurevis: Annotated[
        bool,
        typer.Option(
            "--featurevis", help="Also make each circuit neuron's feature visualisation (Lucent recipe) and store it."
        ),
    ] = False,
    fv_size: Annotated[
        int | None,
        typer.Option(
            "--fv-size",
            min=16,
            max=512,
            help="Feature-visualisation side in pixels (default: the model's input size, else 128).",
        ),
    ] = None,
    fv_steps: Annotated[int, typer.Option("--fv-steps", min=1, max=4096, help="Optimisation steps per picture.")] = 128,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the feature visualisations.")] = 0,
    reference_set: Annotated[
        bool,
        typer.Option(
            "--reference-set",
            help="Also store each circuit neuron's top examples from the model's built-in reference set "
            "(catfish-mini, typo-mini: their synthetic sets; efficientnet-lite0: scikit-image photos).",
        ),
    ] = False,
    reference: Annotated[
        Path | None,
        typer.Option("--reference", help="Also store each circuit neuron's top examples from this folder of images."),
    ] = None,
    db: DbOption = None,
    quiet: QuietOpt = False,
) -> None:
    """(Re)compute a run's neuron patches (with where each neuron fires) and example-image thumbnails, and with
    --featurevis each circuit neuron's feature visualisation (needs the model and the run's weights)."""
    from catalog.engine import open_catalog
    from ingest.hooks import resolve_device
    from ingest.run_media import load_run_model, recompute_run_thumbnails
    from ingest.thumbnails import ThumbnailConfig
    from queries.resolve import resolve_run

    cat = open_catalog(db)
    with cat.session() as s:
        run_id = resolve_run(s, run)
    refs = None
    if reference is not None or reference_set:  # read before any work: a bad folder writes nothing
        from ingest.reference import reference_set as read_reference

        refs = read_reference(model, reference)
    config = ThumbnailConfig(top=top, size=size)
    run_model = load_run_model(cat, run_id, model, weights=weights, device=str(resolve_device(device)))
    with progress_bar(quiet, eta=True) as update:
        patches, thumbs = recompute_run_thumbnails(cat, run_model, config=config, progress=update)
    typer.echo(f"stored {patches} patches and {thumbs} new image thumbnails for run {run_id} in {cat.display}")
    if refs is not None:
        from ingest.reference import store_reference_patches

        with progress_bar(quiet, eta=True) as update:
            n_ref = store_reference_patches(cat, run_model, refs, config=config, progress=update)
        typer.echo(f"stored {n_ref} reference patches ({len(refs)} images of {refs.name}) for run {run_id}")
    if featurevis:
        from ingest.featurevis import FeatureVisConfig, recompute_run_featurevis

        with progress_bar(quiet, eta=True) as update:
            fv_config = FeatureVisConfig(size=fv_size, steps=fv_steps, seed=seed)
            n = recompute_run_featurevis(cat, run_model, config=fv_config, progress=update)
        typer.echo(f"stored {n} feature visualisations ({fv_steps} steps, seed {seed}) for run {run_id}")
