"""`circuits train …`: train the bundled models (a thin wrapper over `ingest.train`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ingest.cli import app

train_app = typer.Typer(help="Train the bundled models on the project's synthetic benchmarks.")
app.add_typer(train_app, name="train")


@train_app.command("catfish")
def train_catfish_command(
    epochs: Annotated[int, typer.Option(help="Passes over fresh images (default: the shipped run's).")] = 14,
    seed: Annotated[int, typer.Option(help="Seeds the init, batch order and every image.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the state dict (.pt; a .json sidecar goes beside it).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    train_per_class: Annotated[int, typer.Option(help="Fresh training images per class per epoch.")] = 500,
    eval_per_class: Annotated[int, typer.Option(help="Held-out images per class.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Images per optimisation step.")] = 64,
    threads: Annotated[int, typer.Option(help="torch CPU threads (same count: same bits).")] = 2,
) -> None:
    """Train catfish-mini on CatFish-synth and write its weights with a JSON sidecar.

    Reports held-out accuracy on images of a seed no epoch uses. The defaults reproduce the shipped
    weights (ingest/weights/catfish_mini.pt).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.progress import TimeRemainingColumn

    from ingest.models.catfish_mini import WEIGHTS_PATH
    from ingest.train import TrainConfig, resolve_device, train_catfish

    config = TrainConfig(
        epochs=epochs, seed=seed, train_per_class=train_per_class, eval_per_class=eval_per_class,
        batch_size=batch_size, device=device, threads=threads,
    )
    config.validate()  # bad settings fail before the progress bar starts
    resolve_device(device)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("training", total=None)

        def report(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        result = train_catfish(config, out or WEIGHTS_PATH, progress=report)
    typer.echo(f"held-out accuracy: {result.heldout_accuracy:.4f} on {result.heldout_images} images")
    typer.echo(f"time: {result.seconds:.1f} s over {result.epochs} epochs")
    typer.echo(f"weights: {result.weights_path} (sha256 {result.file_sha256})")
    typer.echo(f"sidecar: {result.sidecar_path}")
