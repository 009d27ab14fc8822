"""Data functions for circuits and interventions (with their evaluations).

Part of `catalog.store` (import from there); functions take a Session and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import bulk
from catalog.errors import CatalogError, NotFound
from catalog.models import (
    INTERVENTION_KINDS,
    Circuit,
    CircuitNeuron,
    Concept,
    Evaluation,
    Intervention,
    Layer,
    Model,
    Neuron,
    Run,
)
from catalog.refs import CircuitRef, EvaluationRow, InterventionRef
from catalog.store_runs import complete_run_neurons, read_runs
from catalog.vocab import RunStatus

_LIST_CIRCUITS = 'list them with `circuits sql "select * from circuit"`'


def write_circuit(
    session: Session,
    *,
    run_id: int,
    channels: Sequence[Sequence[int]],
    k: Sequence[int],
    fixed: dict[str, list[int]] | None,
    sweeps: int,
    converged: bool,
    objective_history: Sequence[float],
) -> int:
    """Store a circuit of a complete run: `channels[i]` are its k[i] channels in the run's layer i.

    Its neurons go to `circuit_neuron` and its internal edges, with their scores from the run's
    matrices, to `circuit_edge`.

    Args:
        session: the caller's session.
        run_id: the run it was searched on.
        channels: per run layer, the selected channels.
        k: per run layer, how many were selected.
        fixed: anchored layers, layer name → channels (a subset of the run's layers, each with
            exactly the circuit's channels there), or None. Stored with sorted channels.
        sweeps: refinement sweeps done.
        converged: whether the last sweep changed nothing.
        objective_history: objective after the initial selection, then after each sweep.

    Returns:
        The circuit id.

    Raises:
        NotFound: no such run.
        CatalogError: run not complete, wrong number of layers, channels out of range, repeated,
            or not k[i] of them; `fixed` naming another layer or other channels; empty objective
            history.
    """
    run, neuron_ids = complete_run_neurons(session, run_id)
    n_layers = len(run.layer_names)
    if len(channels) != n_layers or len(k) != n_layers:
        raise CatalogError(f"run {run_id} has {n_layers} layers: give channels and k for each")
    if not objective_history:
        raise CatalogError("objective_history must hold at least the initial objective")
    members = []
    for name, width, ids, chosen, ki in zip(run.layer_names, run.widths, neuron_ids, channels, k):
        picked = np.asarray(chosen, dtype=np.int64)
        valid = len(picked) == ki and len(np.unique(picked)) == ki
        if not valid or ((picked < 0) | (picked >= width)).any():
            raise CatalogError(f"layer {name}: need {ki} distinct channels in [0, {width}), got {picked.tolist()}")
        members.append(ids[picked])
    circuit = Circuit(
        run_id=run_id,
        k=[int(x) for x in k],
        fixed=_check_fixed(fixed, run.layer_names, channels),
        sweeps=int(sweeps),
        converged=bool(converged),
        objective=float(objective_history[-1]),
        objective_history=[float(x) for x in objective_history],
    )
    session.add(circuit)
    session.flush()
    neurons = np.concatenate(members)
    bulk.insert_columns(
        session,
        "circuit_neuron",
        {"circuit_id": np.full(len(neurons), circuit.id), "neuron_id": neurons},
    )
    # The internal edges go with the circuit, so its graph and weighted overlap need no matrix.
    bulk.write_circuit_edges(session, circuit.id, run_id, neuron_ids, _matrices(session, run_id, neuron_ids), channels)
    return circuit.id


def _matrices(session: Session, run_id: int, neuron_ids: list[np.ndarray]) -> list[np.ndarray]:
    """A run's matrices, decoded once per session for the circuits written in it.

    A run's scores never change once written, so the last run's decoded matrices are kept in
    `session.info` (searching several k on one run writes several circuits in one session).
    """
    cache = session.info.setdefault("catalog.run_matrices", {})
    if run_id not in cache:
        cache.clear()  # one run at a time: bounded memory
        cache[run_id] = bulk.read_edge_matrices(session, run_id, neuron_ids)
    return cache[run_id]


def _check_fixed(
    fixed: Mapping[str, Sequence[int]] | None, layer_names: Sequence[str], channels: Sequence[Sequence[int]]
) -> dict[str, list[int]] | None:
    """`fixed` as stored: layer name → sorted channels, each the circuit's channels in that layer."""
    if fixed is None:
        return None
    chosen = {name: sorted(int(c) for c in chans) for name, chans in zip(layer_names, channels)}
    out = {}
    for name, chans in fixed.items():
        if name not in chosen:
            raise CatalogError(
                f"fixed names layer {name!r}, which is not a layer of the run "
                f"({', '.join(layer_names)}): key anchored layers by layer name"
            )
        anchored = sorted(int(c) for c in chans)
        if anchored != chosen[name]:
            raise CatalogError(
                f"fixed layer {name} holds channels {anchored}, but the circuit has {chosen[name]} there"
            )
        out[str(name)] = anchored
    return out


def read_circuit(session: Session, circuit_id: int) -> CircuitRef:
    """One circuit with its channels per run layer.

    Raises:
        NotFound: no such circuit.
    """
    circuits = _circuits(session, select(Circuit).where(Circuit.id == circuit_id))
    if not circuits:
        raise NotFound(f"no circuit {circuit_id} in the catalog: {_LIST_CIRCUITS}")
    return circuits[0]


def read_circuits(session: Session, circuit_ids: Sequence[int]) -> list[CircuitRef]:
    """Several circuits by id, in id order (ids not in the catalog are left out); three queries."""
    if not circuit_ids:
        return []
    return _circuits(session, select(Circuit).where(Circuit.id.in_([int(c) for c in circuit_ids])).order_by(Circuit.id))


def find_circuits(
    session: Session,
    model: str | None = None,
    concept: str | None = None,
    *,
    run_id: int | None = None,
) -> list[CircuitRef]:
    """Circuits of complete runs as full `CircuitRef`s (channels, fixed layers, objective history),
    oldest first, optionally of one model, concept or run. For a listing (counts per circuit),
    `queries.list_circuits`."""
    query = (
        select(Circuit)
        .join(Run, Run.id == Circuit.run_id)
        .join(Model, Model.id == Run.model_id)
        .join(Concept, Concept.id == Run.concept_id)
        .where(Run.status == RunStatus.complete)
    )
    if model is not None:
        query = query.where(Model.name == model)
    if concept is not None:
        query = query.where(Concept.name == concept)
    if run_id is not None:
        query = query.where(Circuit.run_id == run_id)
    return _circuits(session, query.order_by(Circuit.id))


list_circuits = find_circuits
"""The old name of `find_circuits` (it clashed with `queries.list_circuits`), kept for one release."""


def _circuits(session: Session, query: Any) -> list[CircuitRef]:
    """The circuits a `select(Circuit)` finds, as refs, in three queries whatever their number."""
    rows = session.scalars(query).all()
    if not rows:
        return []
    ids = [c.id for c in rows]
    runs = {r.id: r for r in read_runs(session, sorted({c.run_id for c in rows}))}
    members = session.execute(
        select(CircuitNeuron.circuit_id, Layer.name, Neuron.channel)
        .join(Neuron, Neuron.id == CircuitNeuron.neuron_id)
        .join(Layer, Layer.id == Neuron.layer_id)
        .where(CircuitNeuron.circuit_id.in_(ids))
    ).all()
    per_circuit: dict[int, dict[str, list[int]]] = {
        c.id: {name: [] for name in runs[c.run_id].layer_names} for c in rows
    }
    for circuit_id, layer_name, channel in members:
        per_circuit[circuit_id][layer_name].append(channel)
    out = []
    for c in rows:
        run, per_layer = runs[c.run_id], per_circuit[c.id]
        out.append(
            CircuitRef(
                id=c.id,
                run_id=c.run_id,
                model=run.model,
                weights_sha256=run.weights_sha256,
                concept=run.concept,
                layer_names=run.layer_names,
                widths=run.widths,
                channels=tuple(tuple(sorted(per_layer[n])) for n in run.layer_names),
                k=tuple(c.k),
                fixed=None if c.fixed is None else {str(n): list(ch) for n, ch in c.fixed.items()},
                sweeps=c.sweeps,
                converged=c.converged,
                objective=float(c.objective),
                objective_history=tuple(float(x) for x in c.objective_history),
                created_at=c.created_at,
            )
        )
    return out


def write_intervention(
    session: Session,
    *,
    circuit_id: int,
    kind: str,
    params: dict[str, Any],
    edge_fraction: float,
    baseline_edge_fraction: float | None,
    evaluations: Sequence[EvaluationRow],
) -> int:
    """Store an intervention on a circuit with its evaluations.

    Args:
        session: the caller's session.
        circuit_id: the circuit.
        kind: "circuit" or "edge" pruning.
        params: e.g. edge layer index, baseline seed (JSON-serialisable).
        edge_fraction: fraction of the model's adjacent-layer edges it cuts.
        baseline_edge_fraction: the same for the random baseline.
        evaluations: one row per image set and metric.

    Returns:
        The intervention id.

    Raises:
        NotFound: no such circuit.
        CatalogError: unknown kind.
    """
    if kind not in INTERVENTION_KINDS:
        raise CatalogError(f"intervention kind must be one of {INTERVENTION_KINDS}, got {kind!r}")
    if session.get(Circuit, circuit_id) is None:
        raise NotFound(f"no circuit {circuit_id} in the catalog: {_LIST_CIRCUITS}")
    row = Intervention(
        circuit_id=circuit_id,
        kind=kind,
        params=params,
        edge_fraction=float(edge_fraction),
        baseline_edge_fraction=baseline_edge_fraction,
    )
    session.add(row)
    session.flush()
    session.add_all(
        Evaluation(
            intervention_id=row.id,
            image_set=e.image_set,
            image_set_sha256=e.image_set_sha256,
            n_images=e.n_images,
            metric=e.metric,
            clean_value=e.clean_value,
            value=e.value,
            baseline_value=e.baseline_value,
        )
        for e in evaluations
    )
    session.flush()
    return row.id


def list_interventions(session: Session, circuit_id: int | None = None) -> list[InterventionRef]:
    """Interventions (of one circuit, if given), oldest first, with their evaluations (two queries)."""
    query = select(Intervention).order_by(Intervention.id)
    if circuit_id is not None:
        query = query.where(Intervention.circuit_id == circuit_id)
    interventions = session.scalars(query).all()
    evaluations: dict[int, list[EvaluationRow]] = {iv.id: [] for iv in interventions}
    if interventions:
        wanted = select(Evaluation).order_by(Evaluation.id)
        if circuit_id is not None:
            wanted = wanted.where(Evaluation.intervention_id.in_([iv.id for iv in interventions]))
        for e in session.scalars(wanted):
            if e.intervention_id in evaluations:
                evaluations[e.intervention_id].append(
                    EvaluationRow(
                        e.image_set,
                        e.image_set_sha256,
                        e.n_images,
                        e.metric,
                        e.clean_value,
                        e.value,
                        e.baseline_value,
                    )
                )
    return [
        InterventionRef(
            id=iv.id,
            circuit_id=iv.circuit_id,
            kind=iv.kind,
            params=dict(iv.params),
            edge_fraction=iv.edge_fraction,
            baseline_edge_fraction=iv.baseline_edge_fraction,
            created_at=iv.created_at,
            evaluations=tuple(evaluations[iv.id]),
        )
        for iv in interventions
    ]
