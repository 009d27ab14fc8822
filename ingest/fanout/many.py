"""Many ingests at once (`circuits ingest-many`): model × concept × k jobs fanned out to workers.

Each job runs `ingest.pipeline`'s steps in a worker (`run_job`). Who writes depends on the catalog:

- PostgreSQL: every worker writes its own run straight to the shared catalog. Runs claim their
  provenance key (`catalog.store.write_run`), so overlapping jobs, reruns and other processes
  ingesting at the same time store each run once.
- DuckDB: a file has one writing process, so workers only read (is it stored?) and compute; they
  send the computed run back and this process writes it (`ingest.writer.store_computed`).

Jobs whose run and circuit are stored are skipped, so rerunning a job file does only what is
missing. A failed job is retried (`retries` more times) unless its input is wrong, and reported.

    from ingest.fanout.executors import InlineExecutor
    report = ingest_many("circuits.duckdb", load_jobs("jobs.yaml"), InlineExecutor())
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from catalog.engine import open_catalog
from catalog.errors import CatalogLocked, CircuitsError
from ingest.fanout.executors import wants_gpu
from ingest.fanout.jobs import Job

__all__ = ["JobOutcome", "ManyReport", "WorkResult", "ingest_many", "run_job"]

WRITE_HERE, WRITE_IN_WORKERS = "driver", "workers"


@dataclass(frozen=True)
class WorkResult:
    """What a worker sends back for one job (picklable).

    Attributes:
        status: "stored", "reused" or "skipped" (done); "pending" (the model half is done: the
            driver records `outcome`); "failed".
        run_id, circuit_id: the stored run and circuit, when done.
        outcome: the `ingest.pipeline.Outcome` for the driver's `ingest.pipeline.record`.
        failure: the failed run row to record (`ingest.writer.RunFailure`), when the worker did not.
        error: one line, when failed.
        retryable: whether running the job again may succeed (not for bad input).
    """

    status: str
    run_id: int | None = None
    circuit_id: int | None = None
    outcome: Any = None
    failure: Any = None
    error: str | None = None
    retryable: bool = True


@dataclass(frozen=True)
class JobOutcome:
    """How one job ended: status "stored", "reused", "skipped" or "failed"."""

    job: Job
    status: str
    run_id: int | None
    circuit_id: int | None
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class ManyReport:
    """Every job's outcome, in job-file order, and who wrote the runs ("workers" or "driver")."""

    outcomes: list[JobOutcome]
    writer: str
    executor: str
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> list[JobOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def run_job(job: Job, db: str, writer: str) -> WorkResult:
    """Run one job in a worker (module-level, so Ray can ship it); never raises.

    The job takes the path every ingest takes (`ingest.pipeline.ingest_prepared`): with
    WRITE_IN_WORKERS both halves run here; with WRITE_HERE the model half runs here on a read-only
    catalog and the driver runs `ingest.pipeline.record` on the returned outcome.

    Args:
        job: what to ingest.
        db: the catalog (path or URL) as the driver opened it.
        writer: WRITE_IN_WORKERS (write the run here) or WRITE_HERE (read only; send it back).
    """
    from ingest.image_sets import resolve_images
    from ingest.pipeline import ComputeFailed, IngestConfig, find_or_compute, prepare, record

    try:
        image_set = resolve_images(images=job.images, dataset=job.dataset, n=job.n, seed=job.seed)
        config = IngestConfig(
            model=job.model,
            concept=job.concept,
            layers=job.layers,
            k=job.k,
            weights=job.weights,
            device=job.device,
            batch_size=job.batch_size,
        )
        prepared = prepare(config, image_set)
        # The two halves of `ingest.pipeline.ingest_prepared`; a failure is not recorded here but
        # by the driver, once per job after its last try (retries do not add `failed` rows).
        reader = open_catalog(db) if writer == WRITE_IN_WORKERS else open_catalog(db, read_only=True, wait=None)
        try:
            outcome = find_or_compute(reader, prepared)
        except ComputeFailed as failed:
            # a CircuitsError (bad layer, bad k) fails the same way every time: not retried
            cause = failed.__cause__
            retryable = not isinstance(cause, CircuitsError) or isinstance(cause, CatalogLocked)
            return WorkResult("failed", failure=failed.failure, error=failed.failure.error, retryable=retryable)
        finally:
            if writer == WRITE_HERE:
                reader.close()  # let go at once: the driver writes
        if writer == WRITE_IN_WORKERS:
            done = record(reader, outcome)
            return WorkResult(done.status, done.run_id, done.circuit_id)
        return WorkResult("pending", outcome=outcome)
    except CircuitsError as exc:  # bad input: running it again will not help (a lock might)
        return WorkResult("failed", error=f"{type(exc).__name__}: {exc}", retryable=isinstance(exc, CatalogLocked))
    except Exception as exc:
        return WorkResult("failed", error=f"{type(exc).__name__}: {exc}")


def ingest_many(
    db: str | None,
    jobs: Sequence[Job],
    executor: Any,
    *,
    retries: int = 2,
    progress: Callable[[int, int, JobOutcome | None], None] | None = None,
) -> ManyReport:
    """Run every job on `executor`, at most `executor.workers` at a time, and store the results.

    Args:
        db: the catalog (path or URL; None: `open_catalog`'s default); created when missing.
        jobs: from `ingest.fanout.jobs.load_jobs`.
        executor: `ingest.fanout.executors.InlineExecutor` or `RayExecutor`.
        retries: how many more times a failed job is tried (bad input is not retried).
        progress: called with (jobs done, jobs total, the outcome just finished or None at start).

    Returns:
        The report; failed jobs are in it, not raised.
    """
    from ingest.writer import record_failure

    t0 = time.perf_counter()
    cat = open_catalog(db, create=True, wait=None)
    writer = WRITE_IN_WORKERS if cat.backend == "postgresql" else WRITE_HERE
    cat.release()
    url = cat.url.render_as_string(hide_password=False)
    outcomes: dict[int, JobOutcome] = {}
    pending = deque((i, 1) for i in range(len(jobs)))
    running: dict[Any, tuple[int, int]] = {}
    if progress is not None:
        progress(0, len(jobs), None)
    while pending or running:
        while pending and len(running) < max(1, executor.workers):
            i, attempt = pending.popleft()
            handle = executor.submit(run_job, jobs[i], url, writer, gpu=wants_gpu(jobs[i].device))
            running[handle] = (i, attempt)
        handle, result = executor.wait_one(list(running))
        i, attempt = running.pop(handle)
        if not isinstance(result, WorkResult):  # the worker itself died
            result = WorkResult("failed", error=f"worker lost: {str(result).splitlines()[0]}")
        result = _finish_here(cat, result) if writer == WRITE_HERE else result
        if result.status == "failed":
            if result.retryable and attempt <= retries:
                pending.append((i, attempt + 1))
                continue
            if result.failure is not None:  # once per job, after its last try
                record_failure(cat, result.failure)
        outcomes[i] = JobOutcome(jobs[i], result.status, result.run_id, result.circuit_id, attempt, result.error)
        if progress is not None:
            progress(len(outcomes), len(jobs), outcomes[i])
    ordered = [outcomes[i] for i in range(len(jobs))]
    counts: dict[str, int] = {}
    for o in ordered:
        counts[o.status] = counts.get(o.status, 0) + 1
    return ManyReport(ordered, writer, executor.description, time.perf_counter() - t0, counts)


def _finish_here(cat: Any, result: WorkResult) -> WorkResult:
    """The driver's part with a DuckDB catalog: the catalog half of the job's ingest."""
    from ingest.pipeline import record

    if result.status != "pending":
        return result
    try:
        done = record(cat, result.outcome)
    except CircuitsError as exc:
        return WorkResult("failed", error=f"{type(exc).__name__}: {exc}", retryable=isinstance(exc, CatalogLocked))
    except Exception as exc:
        return WorkResult("failed", error=f"{type(exc).__name__}: {exc}")
    return WorkResult(done.status, done.run_id, done.circuit_id)
