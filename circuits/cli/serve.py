"""`circuits serve`, `circuits report` and `circuits thumbnails`: thin wrappers over `circuits.web`
and `ingest.thumbnails`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from circuits.cli.options import DbOption
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
    quiet: QuietOpt = False,
) -> None:
    """Browse a catalog in a local web page (read-only): circuits, neurons, comparisons, SQL."""
    from circuits.web.server import is_loopback, make_server

    server = make_server(db, host or "127.0.0.1", port, allow_remote=host is not None, quiet=quiet)
    bound = server.server_address[0]
    assert isinstance(bound, str), "an AF_INET/AF_INET6 server's address is a str"
    where = "this machine only" if is_loopback(bound) else "reachable from other machines"
    typer.echo(f"serving {server.cat.display} read-only at {server.url} ({where}); Ctrl-C stops")
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
    model: Annotated[
        str | None, typer.Option("--model", help="Model, when CIRCUIT is a concept with circuits on several models.")
    ] = None,
    db: DbOption = None,
    quiet: QuietOpt = False,
) -> None:
    """Write a circuit's page as one self-contained HTML file (inline SVG and images, no network)."""
    from catalog.atomic import write_text_atomic
    from catalog.engine import open_catalog
    from circuits.cli.validate import InputError
    from circuits.web.pages import report_html

    if out.suffix.lower() not in (".html", ".htm") or out.is_dir():  # before any work
        raise InputError(f"-o {out}: name the file *.html")
    cat = open_catalog(db, read_only=True)
    circuit_id, html = report_html(cat, circuit, model)
    out.parent.mkdir(parents=True, exist_ok=True)
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
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    top: Annotated[int, typer.Option("--top", min=1, max=16, help="Patches per neuron.")] = 4,
    size: Annotated[int, typer.Option("--size", min=16, max=128, help="Patch side in pixels.")] = 64,
    db: DbOption = None,
    quiet: QuietOpt = False,
) -> None:
    """(Re)compute a run's neuron patches and example-image thumbnails (needs the model)."""
    from catalog.engine import open_catalog
    from ingest.hooks import resolve_device
    from ingest.thumbnails import ThumbnailConfig, recompute_run_thumbnails
    from queries.resolve import resolve_run

    cat = open_catalog(db)
    with cat.session() as s:
        run_id = resolve_run(s, run)
    with progress_bar(quiet, eta=True) as update:
        patches, thumbs = recompute_run_thumbnails(
            cat,
            run_id,
            model,
            weights=weights,
            device=str(resolve_device(device)),
            config=ThumbnailConfig(top=top, size=size),
            progress=update,
        )
    typer.echo(f"stored {patches} patches and {thumbs} new image thumbnails for run {run_id} in {cat.display}")
