"""Read-side commands: `circuits overlap|shared|compose|show|list|prune-plan`.

Thin wrappers: each opens the catalog read-only, calls one library function of `queries`, and
renders the result (`--format table|csv|json`). Nothing here loads a model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from circuits.cli.options import (
    CircuitModelOption,
    DbOption,
    FormatOption,
    InterventionKind,
    OutputFormat,
    RunStatus,
    comma_list,
)

app = typer.Typer()

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

ModelOpt = Annotated[
    str, typer.Option("--model", help="Model name (NAME@SHA256PREFIX when several weights share the name).")
]
CHOICE_HELP = "A concept stands for its newest circuit of its newest complete run."


class OverlapMetric(str, Enum):
    """How `circuits overlap` compares two circuits."""

    jaccard = "jaccard"
    shared = "shared"
    weighted = "weighted"


class Listable(str, Enum):
    """What `circuits list` lists."""

    runs = "runs"
    circuits = "circuits"
    concepts = "concepts"
    models = "models"


def _flowing(func: Callable[..., None]) -> Callable[..., None]:
    """Join the docstring's hard-wrapped lines so the help text re-flows to the terminal's width."""
    paragraphs = inspect.cleandoc(func.__doc__ or "").split("\n\n")
    func.__doc__ = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    return func


def _session(db: str | None) -> Session:
    from catalog.engine import open_catalog

    return open_catalog(db, read_only=True).session()


def _emit(
    rows: list[dict], fmt: OutputFormat, notes: tuple[str, ...] | list[str] = (), columns: list[str] | None = None
) -> None:
    """Print rows; notes go after a table, or to stderr for CSV/JSON so stdout stays parseable."""
    from circuits.cli.render import cli_message, render

    typer.echo(render(rows, fmt.value, columns))
    for note in notes:  # library notes name parameters; here, flags
        typer.echo(f"note: {cli_message(note)}", err=fmt is not OutputFormat.table)


@app.command("overlap")
@_flowing
def overlap(
    model: ModelOpt,
    concepts: Annotated[
        str | None,
        typer.Option(
            "--concepts", help="Comma-separated concepts (default: the --top concepts with the newest circuits)."
        ),
    ] = None,
    top: Annotated[
        int,
        typer.Option("--top", min=1, help="Without --concepts: this many concepts, those with the newest circuits."),
    ] = 50,
    force: Annotated[
        bool,
        typer.Option("--force", help="Compute a matrix over more than 2,000 concepts (memory and time grow as N²)."),
    ] = False,
    metric: Annotated[
        OverlapMetric,
        typer.Option(
            "--metric",
            help="jaccard: shared/union of neurons; shared: neurons in both; weighted: weighted Jaccard of "
            "the circuits' internal edges, each circuit's CLA scores normalised to sum 1.",
        ),
    ] = OverlapMetric.jaccard,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also write the matrix as a heat-map (PNG).")] = None,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
) -> None:
    """Pairwise overlap matrix of a model's concept circuits (table, CSV, JSON, heat-map).

    A concept stands for its newest circuit of its newest complete run; a note says so when a
    concept has several circuits. Without --concepts the --top concepts with the newest circuits
    are compared (a note says how many there are); a matrix over more than 2,000 concepts needs
    --force.
    """
    from queries.overlap import overlap_matrix

    if plot is not None:  # before any work: an unsupported suffix or a missing folder is one line
        from circuits.cli.validate import catalog_files, check_output_path

        check_output_path(plot, suffixes=(".png", ".svg", ".pdf"), inputs=catalog_files(db), what="--plot")
    with _session(db) as s:
        matrix = overlap_matrix(
            s,
            model,
            comma_list(concepts) or None,
            metric.value,
            top=top,
            force=force,
            progress=lambda m: typer.echo(m, err=True),
        )
    _emit(matrix.rows(), fmt, matrix.notes)
    if plot is not None:
        from queries.plots import overlap_heatmap

        typer.echo(f"heat-map: {overlap_heatmap(matrix, plot)}", err=fmt is not OutputFormat.table)


@app.command("shared")
@_flowing
def shared(
    model: ModelOpt,
    concepts: Annotated[str, typer.Option("--concepts", help="Two or more comma-separated concepts.")],
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
) -> None:
    """Neurons (layer, channel) in all of the given concepts' circuits, with their score in each.

    A neuron's score in a circuit is its total within-circuit attribution: the sum of the CLA
    scores of its edges to other neurons of that circuit, in that circuit's run. A concept stands
    for its newest circuit of its newest complete run.
    """
    from queries.overlap import shared_neurons

    with _session(db) as s:
        result = shared_neurons(s, model, comma_list(concepts) or [])
    sizes = ", ".join(f"{c} #{i}: {n}" for c, i, n in zip(result.concepts, result.circuit_ids, result.sizes))
    notes = [*result.notes, f"{len(result.neurons)} shared neurons; circuit sizes {sizes}"]
    _emit(result.rows(), fmt, notes, ["layer", "channel", *result.concepts])


@app.command("compose")
@_flowing
def compose(
    circuit: Annotated[str, typer.Argument(help="Circuit id, or a concept name (its newest circuit).")],
    sources: Annotated[str, typer.Option("--from", help="Comma-separated concepts whose circuits compose it.")],
    model: CircuitModelOption = None,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
) -> None:
    """How much of a (class) circuit the union of the given concept circuits covers, per layer.

    Prints, per layer and in total, the circuit's neurons, how many are in at least one concept
    circuit, the fraction, and how many each concept covers alone. A concept stands for its newest
    circuit of its newest complete run on the circuit's model.
    """
    from queries.compose import compose_circuit
    from queries.listing import resolve_circuit

    with _session(db) as s:
        target = resolve_circuit(s, circuit, model)
        result = compose_circuit(s, target.circuit_id, comma_list(sources) or [])
    notes = [n for n in (target.note, *result.notes) if n]
    notes.append(
        f"circuit {result.circuit_id} ({result.concept}, {result.model}): {result.total.covered} of "
        f"{result.total.neurons} neurons covered ({100 * result.total.fraction:.1f}%)"
    )
    _emit(result.rows(), fmt, notes)


@app.command("show")
@_flowing
def show(
    circuit: Annotated[str, typer.Argument(help="Circuit id, or a concept name (its newest circuit).")],
    model: CircuitModelOption = None,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", help="table: readable text; json: everything; csv: the neurons.")
    ] = OutputFormat.table,
    db: DbOption = None,
) -> None:
    """Everything about one circuit: run, search, neurons per layer, interventions, evaluations."""
    from circuits.cli.render import details_dict, details_neuron_rows, details_text, render_csv, to_json
    from queries.listing import circuit_details, resolve_circuit
    from queries.suggest import ablate_next_step

    with _session(db) as s:
        details = circuit_details(s, resolve_circuit(s, circuit, model).circuit_id)
        next_step = ablate_next_step(s, details.circuit.id, details.run.id, db)
    if fmt is OutputFormat.json:
        typer.echo(to_json(details_dict(details)))
    elif fmt is OutputFormat.csv:
        typer.echo(render_csv(details_neuron_rows(details)))
    else:
        typer.echo(details_text(details, next_step=next_step))


@app.command("list")
@_flowing
def list_(
    what: Annotated[Listable, typer.Argument(help="runs, circuits, concepts or models.")],
    model: Annotated[str | None, typer.Option("--model", help="Only this model (runs, circuits, concepts).")] = None,
    concept: Annotated[str | None, typer.Option("--concept", help="Only this concept (runs, circuits).")] = None,
    status: Annotated[
        RunStatus | None,
        typer.Option("--status", help="Only runs with this status (runs; circuits default to complete runs)."),
    ] = None,
    search: Annotated[
        str | None, typer.Option("--search", help="Only rows whose names or id contain this text (any case).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Rows per page.")] = 100,
    after: Annotated[
        int | None, typer.Option("--after", help="Start after the row with this id (the next-page cursor printed).")
    ] = None,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
) -> None:
    """List the catalog's runs, circuits, concepts or models, with filters, a page at a time.

    Runs and circuits are in id order, models and concepts by name. A note says which rows of how
    many these are and the --after value of the next page.
    """
    from dataclasses import asdict

    from queries.listing_pages import list_page

    state = None if status is None else status.value
    with _session(db) as s:
        page = list_page(
            s, what.value, model=model, concept=concept, status=state, search=search, after=after, limit=limit
        )
    _emit([asdict(r) for r in page.rows], fmt, [page.summary("--after")])


@app.command("prune-plan")
@_flowing
def prune_plan(
    model: ModelOpt,
    against: Annotated[
        str, typer.Option("--against", help="Concept (or evaluated image set) whose behaviour to suppress.")
    ],
    keep: Annotated[
        str | None, typer.Option("--keep", help="Comma-separated concepts whose behaviour to keep.")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Show this many candidates.")] = 10,
    kind: Annotated[
        InterventionKind, typer.Option("--kind", help="Intervention kind the suggested ablate commands use.")
    ] = InterventionKind.circuit,
    keep_budget: Annotated[
        float,
        typer.Option(
            "--keep-budget",
            min=0.0,
            help="Points (of accuracy, or %% of the metric) each --keep concept may lose beyond its random "
            "baseline; plans over it are never recommended.",
        ),
    ] = 2.0,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
) -> None:
    """Which stored circuit to prune to suppress the --against behaviour and spare the --keep ones.

    Ranks by stored evaluations where they exist (drop in attack success or accuracy on the
    --against images minus the mean drop on the --keep images; fewer edges cut wins ties), else
    by a structural proxy, labelled as such: Jaccard with --against's circuit minus mean Jaccard
    with the --keep circuits. Prints the `circuits ablate` commands that would add missing
    evidence. Circuits of the --keep concepts are not candidates. A plan that costs a --keep
    concept more than --keep-budget points below its random baseline is shown as over-budget and
    never ranked; when no plan meets the budget the first line says so.
    """
    from queries.prune_plan import plan_pruning

    with _session(db) as s:
        plan = plan_pruning(s, model, against, comma_list(keep) or [], kind=kind.value, keep_budget=keep_budget / 100)
    if plan.verdict:
        typer.echo(plan.verdict, err=fmt is not OutputFormat.table)
    shown = plan.candidates[:top]
    rows = plan.rows()[:top]
    notes = list(plan.notes)
    db_arg = f" --db {db}" if db else ""
    for c in shown:
        for cmd in c.commands:
            notes.append(f"to add evidence for circuit {c.circuit_id} ({c.concept}): {cmd}{db_arg}")
    if len(plan.candidates) > top:
        notes.append(f"{len(plan.candidates) - top} more candidates: raise --top")
    _emit(rows, fmt, notes)
