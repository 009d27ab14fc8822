"""The ingest pipeline: model × concept images → CLA matrices → circuit → catalog rows.

Every ingest takes one path, `ingest_prepared` (the CLI, `ingest`, `ingest-many`'s workers and
driver, the defence's contrast runs), in two halves with a plain-data hand-over between them:

- `prepare` resolves the request against its model (loaded once, or the `nn.Module` the caller
  passed) and works out the run's provenance key, without the catalog;
- `find_or_compute` (the model half) reads the catalog once: a run with the same weights, layers,
  image set and CLA parameters is not recomputed unless `force` is set; otherwise it runs CLA and
  the circuit search (`ingest.compute`) without holding the catalog;
- `record` (the catalog half, no model) writes model, concept, images, run, edges and circuit in
  one short transaction (`ingest.writer.store_computed`), or records a stored run under the
  request's concept (`ingest.reuse`) and makes its circuit of this k from the stored edges.

`ingest-many` runs the first half in worker processes and, for a DuckDB catalog (one writing
process), the second in the driver. A crash or Ctrl-C at any moment leaves either the whole run or
none of it (plus, where possible, a `failed` run row saying what happened).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from catalog import store
from catalog.engine import Catalog
from catalog.sizes import BadK
from ingest.compute import ComputeFailed, Progress, compute
from ingest.image_sets import resolve_images
from ingest.images import ImageSet
from ingest.prepare import IngestConfig, IngestError, Prepared, prepare, provenance_key

__all__ = [
    "BadK",
    "IngestConfig",
    "IngestError",
    "IngestResult",
    "Outcome",
    "Prepared",
    "Request",
    "compute",
    "find_or_compute",
    "ingest",
    "ingest_concept",
    "ingest_prepared",
    "prepare",
    "provenance_key",
    "record",
    "resolve_images",  # moved to ingest.image_sets; kept here for callers of the old place
    "stored_circuit",
]


@dataclass(frozen=True)
class IngestResult:
    """What an ingest stored or found: the run, its circuit of the request's k and how it went."""

    run_id: int
    circuit_id: int
    reused: bool  # True when an identical complete run already existed
    n_images: int
    skipped: tuple[tuple[str, str], ...] = field(default=())
    seconds: float = 0.0
    channels: tuple[tuple[int, ...], ...] = ()
    preprocessing: str = ""  # `Preprocessing.describe()` of the inputs the run used
    status: str = "stored"  # "stored", "reused" (a circuit or the concept's copy added) or "skipped" (all stored)


@dataclass(frozen=True)
class Request:
    """What the catalog half of an ingest needs of a request: no model, no pixels (picklable).

    Attributes:
        concept: the concept name the run is stored (or reused) under.
        ks: circuit neurons per layer.
        max_sweeps: the most refinement sweeps of a circuit made from stored edges.
        provenance_key: the run's identity.
        image_set_sha256: the image set's identity.
        images: (image sha256, source) per image, in order.
        skipped: (path, reason) of unreadable image files.
        preprocessing: `Preprocessing.describe()` of the inputs.
        force: recompute even when the run is stored.
    """

    concept: str
    ks: tuple[int, ...]
    max_sweeps: int
    provenance_key: str
    image_set_sha256: str
    images: tuple[tuple[str, str], ...]
    skipped: tuple[tuple[str, str], ...]
    preprocessing: str
    force: bool = False

    @classmethod
    def of(cls, prepared: Prepared) -> Request:
        image_set = prepared.image_set
        return cls(
            concept=prepared.config.concept,
            ks=tuple(prepared.ks),
            max_sweeps=prepared.config.max_sweeps,
            provenance_key=prepared.provenance_key,
            image_set_sha256=image_set.sha256,
            images=tuple(zip(image_set.sha256s, image_set.sources)),
            skipped=tuple(image_set.skipped),
            preprocessing=prepared.preprocessing.describe(),
            force=prepared.config.force,
        )


@dataclass(frozen=True)
class Outcome:
    """The model half of an ingest, handed to the catalog half (`record`); picklable.

    Exactly one of `found` (the stored run and its circuit of this k, or None for the circuit)
    and `computed` (an `ingest.writer.ComputedRun`) is set.
    """

    request: Request
    found: tuple[int, int | None] | None = None
    computed: Any = None
    seconds: float = 0.0  # the model half's time (a duration: clocks differ between machines)


def stored_circuit(cat: Catalog, prepared: Prepared | Request) -> tuple[int, int | None] | None:
    """Whether this request's run is stored: (run id, id of its circuit of this k or None), or
    None when it must be computed (or `force` is set). Reads only."""
    request = prepared if isinstance(prepared, Request) else Request.of(prepared)
    if request.force:
        return None
    with cat.reading() as s:  # waits while another process writes; lets the file go after
        existing = store.find_complete_run(s, request.provenance_key)
        if existing is None:
            return None
        same = [c for c in store.find_circuits(s, run_id=existing.id) if tuple(c.k) == request.ks and not c.fixed]
    return existing.id, (same[0].id if same else None)


def find_or_compute(reader: Catalog, prepared: Prepared, *, progress: Progress | None = None) -> Outcome:
    """The model half of an ingest: is the run stored (read `reader` once, then let it go)? If
    not, compute it (`ingest.compute.compute`, with `prepared.scores`). Writes nothing.

    Args:
        reader: the catalog, open read-write or read-only (only read here).
        prepared: from `prepare`.
        progress: as for `ingest_prepared`.

    Raises:
        ComputeFailed: the computation failed (it carries the failed run row to record).
    """
    request = Request.of(prepared)
    found = stored_circuit(reader, request)
    reader.release()  # hold nothing while computing
    if found is not None:
        return Outcome(request, found=found, seconds=time.perf_counter() - prepared.started)
    computed = compute(prepared, progress=progress)
    return Outcome(request, computed=computed, seconds=computed.seconds)


def record(cat: Catalog, outcome: Outcome, *, progress: Progress | None = None) -> IngestResult:
    """The catalog half of an ingest: store a computed run, or reuse the stored one under the
    request's concept (`ingest.reuse.run_of_concept`), making its circuit of this k from the stored
    edges alone when it has none. Needs no model.

    Returns:
        The result; `status` says "stored", "reused" (something was added: a circuit, the
        concept's copy of the run) or "skipped" (the concept's run and circuit were stored).
    """
    from ingest.reuse import run_of_concept
    from ingest.writer import store_computed

    request, t0 = outcome.request, time.perf_counter()
    if outcome.found is not None:
        run_id, circuit_id = run_of_concept(cat, request, *outcome.found)
        nothing_new = circuit_id is not None  # the concept's run already has this k (a new copy has none)
        circuit_id, channels = _circuit_of_k(cat, request, run_id, circuit_id)
        status, seconds = ("skipped" if nothing_new else "reused"), outcome.seconds + time.perf_counter() - t0
    else:
        computed = outcome.computed
        if progress is not None:
            progress("writing", 0, 1)
        run_id, circuit_id, reused, channels = store_computed(cat, computed)
        if progress is not None:
            progress("writing", 1, 1)
        status, seconds = ("reused" if reused else "stored"), computed.seconds
    return IngestResult(
        run_id,
        circuit_id,
        status != "stored",
        len(request.images),
        request.skipped,
        seconds,
        channels,
        request.preprocessing,
        status,
    )


def _circuit_of_k(
    cat: Catalog, request: Request, run_id: int, circuit_id: int | None
) -> tuple[int, tuple[tuple[int, ...], ...]]:
    """The stored run's circuit of the request's k, made from its stored edges alone (no model)
    when it has none yet; with its channels."""
    from ingest.cla.search import find_circuit
    from ingest.writer import add_circuit_once

    if circuit_id is None:
        with cat.reading() as s:
            matrices = store.read_run_matrices(s, run_id)
        circuit = find_circuit(matrices, list(request.ks), max_sweeps=request.max_sweeps)
        with cat.writing() as s:  # another process may have added this k meanwhile: then reuse it
            circuit_id, _ = add_circuit_once(s, run_id, request.ks, circuit)
    with cat.reading() as s:
        channels = tuple(tuple(c) for c in store.read_circuit(s, circuit_id).channels)
    return circuit_id, channels


def ingest_concept(
    cat: Catalog,
    config: IngestConfig,
    image_set: ImageSet,
    *,
    progress: Progress | None = None,
) -> IngestResult:
    """Run CLA for one model × concept and store the run and its circuit.

    The catalog is read once (is this run stored?), let go during the computation (a DuckDB file
    stays readable by other processes), and written in one short transaction at the end
    (`ingest.writer.store_computed`). When another process stores the same run meanwhile, its run
    is reused.

    Args:
        cat: an open, writable catalog.
        config: what to run.
        image_set: the concept's example images.
        progress: optional callback (stage, done, total) for progress bars.

    Returns:
        The stored (or reused) run and its circuit.

    Raises:
        IngestError, UnknownModel, UnknownLayer, ImageSetError: bad input, before anything is written.
        CatalogLocked: a DuckDB file stayed held by another process at write time.
    """
    return ingest_prepared(cat, prepare(config, image_set), progress=progress)


ingest = ingest_concept
"""The old name of `ingest_concept` (it shadowed the package's own name), kept for one release."""


def ingest_prepared(cat: Catalog, prepared: Prepared, *, progress: Progress | None = None) -> IngestResult:
    """`ingest_concept` from a `prepare`d request: the one path every ingest takes (the CLI, `ingest_concept`,
    `ingest-many`'s workers and driver, the defence's contrast runs): `find_or_compute`, then
    `record`; a failed computation leaves a `failed` run row and raises its error.

    Args:
        cat: an open, writable catalog.
        prepared: from `prepare`.
        progress: optional callback (stage, done, total).

    The run's duration counts from `prepared.started`; its scores are `prepared.scores`'s (plain
    CLA when None).
    """
    from ingest.writer import record_failure

    try:
        outcome = find_or_compute(cat, prepared, progress=progress)
    except ComputeFailed as failed:
        record_failure(cat, failed.failure)
        cause = failed.__cause__
        assert cause is not None, "compute raises ComputeFailed from the error"
        raise cause from None
    return record(cat, outcome, progress=progress)
