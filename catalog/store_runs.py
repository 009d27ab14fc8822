"""Data functions for runs: write one with all its edges, record a failure, read, list, delete.

Part of `catalog.store` (import from there); functions take a Session and never commit.

A complete run claims its provenance key in `run_key` (one run per key), in the transaction that
writes it: of two processes writing the same run at once, the second waits for the first to commit
(PostgreSQL) and gets `RunExists` naming the winner's run, with nothing of its own written.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, TypedDict, Unpack, cast

import numpy as np
import pyarrow as pa
from sqlalchemy import Table, delete, select, text
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.orm import Session

from catalog import bulk
from catalog._keywords import check_keywords
from catalog.errors import CatalogError, NotFound
from catalog.models import (
    Circuit,
    CircuitNeuron,
    Concept,
    Evaluation,
    Intervention,
    Layer,
    Model,
    Run,
    RunKey,
    utcnow,
)
from catalog.refs import LayerRef, ModelRef, RunRef
from catalog.store_models import read_model
from catalog.vocab import RunStatus

_LIST_RUNS = 'list them with `circuits sql "select * from run"`'


class RunExists(CatalogError):
    """A complete run with the same provenance key is already stored (reuse it: `run_id`)."""

    def __init__(self, run_id: int, provenance_key: str):
        super().__init__(
            f"run {run_id} already has provenance key {provenance_key[:12]}…: reuse it, or store "
            "another with `replace=`"
        )
        self.run_id = run_id
        self.provenance_key = provenance_key


class _RunFields(TypedDict):
    """What `write_run` and `record_failed_run` both store about a run (their keyword arguments):
    what was computed, from what (the provenance key's inputs and the key), then where and when."""

    model: ModelRef
    concept_id: int
    image_set_sha256: str
    n_images: int
    layer_names: Sequence[str]
    params: dict[str, Any]
    provenance_key: str
    device: str
    library_versions: dict[str, str]
    started_at: dt.datetime
    seconds: float | None


def write_run(
    session: Session,
    *,
    matrices: Sequence[np.ndarray],
    replace: bool = False,
    edge_top_k: int = bulk.DEFAULT_TOP_K,
    **fields: Unpack[_RunFields],
) -> int:
    """Write a complete run and all its edges (in bulk) in the caller's transaction.

    Nothing is visible until the caller commits, so a crash before that leaves no trace. The run
    claims its provenance key before its edges are written; when another complete run holds the
    key, nothing is written and `RunExists` says which run (the caller's transaction stays usable).

    Args:
        session: the caller's session.
        model: from `ensure_model`.
        concept_id: from `ensure_concept`.
        image_set_sha256: sha256 of the concept image set used.
        n_images: number of images.
        layer_names: the run's layers in forward order (S_i pairs layer i with layer i + 1).
        params: CLA parameters (JSON-serialisable).
        provenance_key: sha256 of weights + layers + images + params (`find_complete_run`).
        device: e.g. "cpu", "cuda:0".
        library_versions: e.g. {"torch": "2.14.1"}.
        started_at: when the computation started (naive UTC, or aware).
        seconds: how long it took.
        matrices: per adjacent pair i, S_i of shape (C_i, C_{i+1}), float32 scores (all kept).
        replace: make this run the one its key stands for even if another holds it (a forced
            recompute); the other stays stored.
        edge_top_k: top edges per neuron and pair also written as `edge` rows (`edges_v`).

    Returns:
        The run id.

    Raises:
        RunExists: another complete run has this provenance key (and replace is False).
        CatalogError: bad layers, matrix shapes, non-finite scores or non-JSON params.
        NotFound: unknown concept or layer.
    """
    check_keywords("the run fields of write_run()", fields, _RunFields)
    neuron_ids = [layer.neuron_ids for layer in _run_layers(fields["model"], fields["layer_names"])]
    bulk.check_matrix_shapes(neuron_ids, matrices)
    run = _add_run(session, fields, status=RunStatus.complete, error=None)
    holder = _claim_key(session, fields["provenance_key"], run.id, replace=replace)
    if holder != run.id:
        session.execute(delete(Run).where(Run.id == run.id))
        session.expunge(run)
        raise RunExists(holder, fields["provenance_key"])
    bulk.write_edge_matrices(session, run.id, neuron_ids, matrices, top_k=edge_top_k)
    return run.id


def _claim_key(session: Session, provenance_key: str, run_id: int, *, replace: bool) -> int:
    """Make `run_id` the run of `provenance_key` unless another holds it; returns the holder.

    On PostgreSQL a concurrent claim of the same key waits here until the other transaction ends.
    """
    table = cast(Table, RunKey.__table__)  # a declarative class's __table__ is a Table (typed FromClause)
    stmt = upsert(table).values(provenance_key=provenance_key, run_id=run_id)
    if replace:
        stmt = stmt.on_conflict_do_update(index_elements=["provenance_key"], set_={"run_id": run_id})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=["provenance_key"])
    if session.execute(stmt.returning(table.c.run_id)).scalar() is not None:
        return run_id
    return session.scalars(select(RunKey.run_id).where(RunKey.provenance_key == provenance_key)).one()


def record_failed_run(session: Session, *, error: str, **fields: Unpack[_RunFields]) -> int:
    """Record a run that failed (no edges), with its error message. Arguments as `write_run`.

    Returns:
        The run id.
    """
    check_keywords("the run fields of record_failed_run()", fields, _RunFields)
    _run_layers(fields["model"], fields["layer_names"])
    return _add_run(session, fields, status=RunStatus.failed, error=error).id


def _run_layers(model: ModelRef, layer_names: Sequence[str]) -> list[LayerRef]:
    if len(layer_names) < 2 or len(set(layer_names)) != len(layer_names):
        raise CatalogError(f"a run needs two or more distinct layers, got {list(layer_names)}")
    return [model.layer(n) for n in layer_names]


def _add_run(session: Session, fields: _RunFields, *, status: RunStatus, error: str | None) -> Run:
    if session.get(Concept, fields["concept_id"]) is None:
        raise NotFound(f"no concept {fields['concept_id']} in the catalog")
    for what in ("params", "library_versions"):
        try:
            json.dumps(fields[what])
        except (TypeError, ValueError) as exc:
            raise CatalogError(f"run {what} must be JSON-serialisable: {exc}") from exc
    started_at, seconds = fields["started_at"], fields["seconds"]
    if started_at.tzinfo is not None:
        started_at = started_at.astimezone(dt.UTC).replace(tzinfo=None)
    run = Run(
        model_id=fields["model"].id,
        concept_id=fields["concept_id"],
        layer_names=list(fields["layer_names"]),
        params=fields["params"],
        image_set_sha256=fields["image_set_sha256"],
        n_images=fields["n_images"],
        provenance_key=fields["provenance_key"],
        library_versions=fields["library_versions"],
        device=fields["device"],
        started_at=started_at,
        finished_at=utcnow(),
        seconds=None if seconds is None else float(seconds),
        status=status,
        error=error,
    )
    session.add(run)
    session.flush()
    return run


def find_complete_run(session: Session, provenance_key: str) -> RunRef | None:
    """The complete run this provenance key stands for, or None (re-run detection)."""
    run_id = session.scalars(select(RunKey.run_id).where(RunKey.provenance_key == provenance_key)).first()
    return None if run_id is None else read_run(session, run_id)


def read_run(session: Session, run_id: int) -> RunRef:
    """One run, whatever its status.

    Raises:
        NotFound: no such run.
    """
    runs = read_runs(session, [run_id])
    if not runs:
        raise NotFound(f"no run {run_id} in the catalog: {_LIST_RUNS}")
    return runs[0]


def list_runs(
    session: Session,
    model: str | None = None,
    concept: str | None = None,
    *,
    include_failed: bool = False,
) -> list[RunRef]:
    """Runs, oldest first, optionally of one model name and/or concept name.

    Args:
        session: the caller's session.
        model: model name filter.
        concept: concept name filter.
        include_failed: also list failed (and running) runs.
    """
    query = select(Run).join(Model, Model.id == Run.model_id).join(Concept, Concept.id == Run.concept_id)
    if model is not None:
        query = query.where(Model.name == model)
    if concept is not None:
        query = query.where(Concept.name == concept)
    if not include_failed:
        query = query.where(Run.status == RunStatus.complete)
    return _runs(session, query.order_by(Run.id))


def read_runs(session: Session, run_ids: Sequence[int]) -> list[RunRef]:
    """Several runs by id, in id order (missing ids are left out), in four queries."""
    if not run_ids:
        return []
    return _runs(session, select(Run).where(Run.id.in_([int(r) for r in run_ids])).order_by(Run.id))


def _runs(session: Session, query: Any) -> list[RunRef]:
    """The runs a `select(Run)` finds, as refs, in four queries whatever their number."""
    runs = session.scalars(query).all()
    if not runs:
        return []
    model_ids = sorted({r.model_id for r in runs})
    concept_ids = sorted({r.concept_id for r in runs})
    models = {m.id: m for m in session.scalars(select(Model).where(Model.id.in_(model_ids)))}
    concepts = {c.id: c for c in session.scalars(select(Concept).where(Concept.id.in_(concept_ids)))}
    widths: dict[int, dict[str, int]] = {m: {} for m in model_ids}
    for model_id, name, width in session.execute(
        select(Layer.model_id, Layer.name, Layer.width).where(Layer.model_id.in_(model_ids))
    ):
        widths[model_id][name] = width
    out = []
    for run in runs:
        model, concept = models[run.model_id], concepts[run.concept_id]
        out.append(
            RunRef(
                id=run.id,
                model_id=run.model_id,
                model=model.name,
                architecture=model.architecture,
                weights_sha256=model.weights_sha256,
                concept_id=run.concept_id,
                concept=concept.name,
                layer_names=tuple(run.layer_names),
                widths=tuple(widths[run.model_id][n] for n in run.layer_names),
                params=dict(run.params),
                image_set_sha256=run.image_set_sha256,
                n_images=run.n_images,
                provenance_key=run.provenance_key,
                library_versions=dict(run.library_versions),
                device=run.device,
                status=run.status,
                error=run.error,
                started_at=run.started_at,
                finished_at=run.finished_at,
                seconds=run.seconds,
            )
        )
    return out


def complete_run_neurons(session: Session, run_id: int) -> tuple[RunRef, list[np.ndarray]]:
    """A complete run and, per run layer, its (C_i,) neuron ids indexed by channel.

    Raises:
        NotFound: no such run.
        CatalogError: the run is not complete.
    """
    run = read_run(session, run_id)
    if run.status != RunStatus.complete:
        raise CatalogError(f"run {run_id} is {run.status}: it has no scores")
    model = read_model(session, run.model_id)
    return run, [model.layer(n).neuron_ids for n in run.layer_names]


def read_run_matrices(session: Session, run_id: int) -> list[np.ndarray]:
    """A complete run's scores as dense matrices: S_i (C_i, C_{i+1}) float32 per adjacent pair.

    Raises:
        NotFound: no such run.
        CatalogError: the run is not complete.
    """
    return bulk.read_run_matrices(session, run_id)  # one query: refine's read stays fast


def read_run_edges_arrow(session: Session, run_id: int) -> pa.Table:
    """A complete run's edges as Arrow (see `catalog.bulk.read_edges_arrow` for the columns).

    Raises:
        NotFound: no such run.
        CatalogError: the run is not complete.
    """
    run, neuron_ids = complete_run_neurons(session, run_id)
    return bulk.read_edges_arrow(session, run_id, run.layer_names, neuron_ids)


def delete_run(session: Session, run_id: int) -> None:
    """Delete a run with its edges, circuits, interventions and evaluations.

    Raises:
        NotFound: no such run.
    """
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id} in the catalog")
    key = run.provenance_key
    circuits = select(Circuit.id).where(Circuit.run_id == run_id)
    interventions = select(Intervention.id).where(Intervention.circuit_id.in_(circuits))
    session.execute(delete(Evaluation).where(Evaluation.intervention_id.in_(interventions)))
    session.execute(delete(Intervention).where(Intervention.circuit_id.in_(circuits)))
    session.execute(delete(CircuitNeuron).where(CircuitNeuron.circuit_id.in_(circuits)))
    session.execute(delete(Circuit).where(Circuit.run_id == run_id))
    bulk.delete_edges(session, run_id)
    session.execute(delete(RunKey).where(RunKey.run_id == run_id))
    session.execute(delete(Run).where(Run.id == run_id))
    session.expunge(run)
    # The key now stands for the newest other complete run with it, if any (a forced recompute).
    session.execute(
        text(
            "INSERT INTO run_key (provenance_key, run_id) SELECT provenance_key, max(id) FROM run "
            "WHERE provenance_key = :k AND status = :complete GROUP BY provenance_key "
            "ON CONFLICT DO NOTHING"
        ),
        {"k": key, "complete": str(RunStatus.complete)},
    )
