"""`circuits ingest-many`: a thin wrapper over `ingest.fanout.many` (jobs from a YAML file, fanned out)."""

from __future__ import annotations

from typing import Annotated

import typer

from circuits.cli.db import DbOption

app = typer.Typer()


@app.command("ingest-many")
def ingest_many(
    jobs_file: Annotated[
        str,
        typer.Argument(help="YAML list of jobs: {model, concept, dataset|images, k, layers?, weights?, n?, seed?}."),
    ],
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Jobs run at once on Ray (default: 2 on a local cluster, the cluster's CPUs with --address; "
            "0: one at a time in this process, no Ray).",
            min=0,
        ),
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", help="Tries more for a failed job (bad input is not retried).", min=0)
    ] = 2,
    address: Annotated[
        str | None,
        typer.Option("--address", help="A running Ray cluster, e.g. ray://head:10001 (default: start a local one)."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Ingest many model × concept × k jobs in parallel; skip what is stored, retry and report failures."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ingest.fanout.executors import InlineExecutor, RayExecutor
    from ingest.fanout.jobs import load_jobs
    from ingest.fanout.many import WRITE_HERE
    from ingest.fanout.many import ingest_many as run_many

    jobs = load_jobs(jobs_file)
    inline = workers == 0 and address is None
    if inline:  # the jobs run in this process: threads for its free CPUs (Ray workers get theirs from the executor)
        from ingest.threads import configure

        configure()
    executor = InlineExecutor() if inline else RayExecutor(workers or None, address)
    bar = Progress(TextColumn("{task.description:<36}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    task = bar.add_task("jobs", total=len(jobs))

    def update(done: int, total: int, outcome) -> None:
        if outcome is None:
            bar.start()
            return
        bar.update(task, completed=done, description=f"{outcome.status}: {outcome.job.label}"[:36])

    try:
        report = run_many(db, jobs, executor, retries=retries, progress=update)
    finally:
        bar.stop()
        executor.shutdown()
    if report.writer == WRITE_HERE:
        where = "this process wrote every run (a DuckDB catalog takes one writer" + (
            "; the workers computed in parallel)" if executor.workers > 1 else ")"
        )
    else:
        where = "each worker wrote its runs to the shared catalog"
    typer.echo(f"ran {len(jobs)} jobs ({report.executor}) in {report.seconds:.1f} s; {where}")
    for o in report.outcomes:
        ids = f"run {o.run_id}, circuit {o.circuit_id}" if o.run_id is not None else ""
        tries = f" after {o.attempts} tries" if o.attempts > 1 else ""
        typer.echo(f"  {o.status:<8} {o.job.label:<40} {ids}{tries}")
    summary = ", ".join(f"{n} {status}" for status, n in sorted(report.counts.items()))
    typer.echo(f"{summary}")
    for o in report.failed:
        typer.echo(f"error: job {o.job.label} failed after {o.attempts} tries: {o.error}", err=True)
    if report.failed:
        raise typer.Exit(1)
