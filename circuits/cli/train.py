"""`circuits train …`: train the bundled models (a thin wrapper over `ingest.train`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer()

train_app = typer.Typer(help="Train the bundled models on the project's synthetic benchmarks.")
app.add_typer(train_app, name="train")

# Options the three commands share (their defaults stay at each command).
Epochs = Annotated[int, typer.Option(help="Passes, each over fresh images.")]
Seed = Annotated[int, typer.Option(help="Seeds the init, batch order and every image.")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")]
TrainPerClass = Annotated[int, typer.Option(help="Fresh training images per class per epoch.")]
EvalPerClass = Annotated[int, typer.Option(help="Held-out images per class (clean and attacked for the typo models).")]
BatchSize = Annotated[int, typer.Option(help="Images per optimisation step.")]
Threads = Annotated[int, typer.Option(help="torch CPU threads (same count: same bits).")]
TextShare = Annotated[float, typer.Option(help="Share of training images with the true class name written on them.")]
TextOnlyShare = Annotated[float, typer.Option(help="Share showing the class name alone on a background.")]
Out = Annotated[
    Path | None,
    typer.Option(
        help="State dict to write (a .json sidecar goes beside it) (default: the model's shipped file in ingest/weights)."
    ),
]


@train_app.command("catfish")
def train_catfish_command(
    epochs: Epochs = 8,
    seed: Seed = 0,
    out: Out = None,
    device: Device = "auto",
    train_per_class: TrainPerClass = 400,
    eval_per_class: EvalPerClass = 100,
    batch_size: BatchSize = 64,
    threads: Threads = 2,
) -> None:
    """Train catfish-mini on CatFish-synth; write its weights and a JSON sidecar (sha256, accuracy).

    Held-out accuracy is measured on images of a seed no epoch uses. The defaults with
    --device cpu reproduce the shipped weights.
    """
    _run(_shared(epochs, seed, train_per_class, eval_per_class, batch_size, device, threads), out)


def _typo_command(
    epochs_default: int, batch_size_default: int, recipe: dict[str, Any], doc: str
) -> Callable[..., None]:
    """A `circuits train typo…` command: typo-mini and typo-vit take the same options and differ in
    the default epochs and batch size, and in `recipe` (the model and the optimiser settings)."""

    def command(
        epochs: Epochs = epochs_default,
        seed: Seed = 0,
        out: Out = None,
        device: Device = "auto",
        train_per_class: TrainPerClass = 400,
        eval_per_class: EvalPerClass = 100,
        batch_size: BatchSize = batch_size_default,
        threads: Threads = 2,
        text_share: TextShare = 0.5,
        text_only_share: TextOnlyShare = 0.1,
    ) -> None:
        shared = _shared(epochs, seed, train_per_class, eval_per_class, batch_size, device, threads)
        typo = dict(dataset="typo", text_share=text_share, text_only_share=text_only_share)
        _run(shared | typo | recipe, out)

    command.__doc__ = doc  # the command's help
    return command


_TYPO_HELP = """Train typo-mini (catfish-mini's network) on Typographic-synth, so it learns to read.

Prints held-out clean accuracy and attack success (share of held-out attack images classified
as the class written on them). The defaults with --device cpu reproduce the shipped weights.
"""
_TYPO_VIT_HELP = """Train typo-vit (a 6-block ViT, patch 8, 64 px) on Typographic-synth with typo-mini's recipe.

Prints held-out clean accuracy, attack success and the time taken. The defaults with --device
cpu reproduce the shipped weights on the same machine and thread count.
"""
train_typo_command = train_app.command("typo")(_typo_command(12, 64, {}, _TYPO_HELP))
train_typo_vit_command = train_app.command("typo-vit")(
    _typo_command(40, 32, dict(model="typo-vit", lr=3e-4, weight_decay=0.05), _TYPO_VIT_HELP)
)


def _shared(
    epochs: int, seed: int, train_per_class: int, eval_per_class: int, batch_size: int, device: str, threads: int
) -> dict:
    """The settings every train command takes, as `TrainConfig` keywords."""
    return dict(
        epochs=epochs,
        seed=seed,
        train_per_class=train_per_class,
        eval_per_class=eval_per_class,
        batch_size=batch_size,
        device=device,
        threads=threads,
    )


def _run(settings: dict, out: Path | None) -> None:
    """Validate, train with a progress bar, print the outcome (shared by the three commands)."""
    if "torch" not in sys.modules:
        # Idle OpenMP threads that spin instead of sleeping made training 5x slower on a CPU shared
        # with other processes (measured on a loaded 2-core machine); this must precede import.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ingest.train import TrainConfig, default_weights, resolve_device, train_catfish

    config = TrainConfig(**settings)
    config.validate()  # bad settings fail before the progress bar starts
    resolve_device(config.device)
    default_out = default_weights(config)
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("training", total=None)

        def report(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        def epoch_line(r: dict) -> None:
            attack = f"  attack success {r['attack_success']:.3f}" if "attack_success" in r else ""
            bar.console.print(
                f"epoch {r['epoch']}: loss {r['loss']:.4f}  train acc {r['train_accuracy']:.3f}  "
                f"held-out acc {r['heldout_accuracy']:.3f}{attack}  ({r['seconds']:.0f} s)"
            )

        result = train_catfish(config, out or default_out, progress=report, on_epoch=epoch_line)
    typer.echo(f"held-out accuracy: {result.heldout_accuracy:.4f} on {result.heldout_images} images")
    if result.heldout_accuracy < 0.95:
        typer.echo("held-out accuracy is below the 95% target: train longer (--epochs, --train-per-class)")
    if result.attack_success is not None:
        typer.echo(f"attack success: {result.attack_success:.4f} (held-out attacks read as the written class)")
    typer.echo(f"time: {result.seconds:.1f} s over {result.epochs} epochs")
    typer.echo(f"weights: {result.weights_path} (sha256 {result.file_sha256})")
    typer.echo(f"sidecar: {result.sidecar_path}")
