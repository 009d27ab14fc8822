"""Listings of the catalog (models, concepts, runs, circuits) and everything about one circuit.

Each listing is one query built with joins and grouped counts, whatever the number of rows;
`circuit_details` reads one circuit, its run and its interventions in a fixed number of queries.
Every function takes a Session and returns plain frozen dataclasses. Resolving names (a model,
a circuit by id or concept) lives in `queries.resolve`; its names are re-exported here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from catalog import store
from catalog.errors import CircuitsError
from catalog.sql import decode_json, query_arrow
from catalog.vocab import RunStatus
from queries.resolve import COMPLETE_RUN as _COMPLETE
from queries.resolve import (
    CircuitChoice,
    ModelChoice,
    choice_notes,
    concept_circuits,
    resolve_circuit,
    resolve_model,
)

__all__ = [
    "CircuitChoice",
    "CircuitDetails",
    "CircuitRow",
    "ConceptRow",
    "ModelChoice",
    "ModelRow",
    "RunRow",
    "choice_notes",
    "circuit_details",
    "concept_circuits",
    "list_circuits",
    "list_concepts",
    "list_models",
    "list_runs",
    "resolve_circuit",
    "resolve_model",
]


@dataclass(frozen=True)
class ModelRow:
    """One catalogued model."""

    id: int
    name: str
    architecture: str
    weights: str  # first 12 hex digits of the weights sha256
    layers: int
    runs: int
    circuits: int


@dataclass(frozen=True)
class ConceptRow:
    """One concept and how much of it the catalog holds."""

    id: int
    name: str
    description: str | None
    image_sets: int
    runs: int
    circuits: int


@dataclass(frozen=True)
class RunRow:
    """One run, as listed."""

    id: int
    model: str
    concept: str
    status: str
    layers: int
    images: int
    device: str
    started: dt.datetime
    seconds: float | None
    circuits: int


@dataclass(frozen=True)
class CircuitRow:
    """One circuit, as listed."""

    id: int
    run: int
    model: str
    concept: str
    neurons: int
    layers: int
    sweeps: int
    converged: bool
    objective: float
    interventions: int
    created: dt.datetime


def _check_status(status: str | None) -> None:
    if status is not None and status not in set(RunStatus):
        raise CircuitsError(f"unknown run status {status!r}: use one of {', '.join(RunStatus)}")


def _filters(model: str | None, concept: str | None, status: str | None) -> tuple[str, dict[str, object]]:
    clauses: list[str] = []
    params: dict[str, object] = {}
    if model is not None:
        clauses.append("m.name = :model")
        params["model"] = model.partition("@")[0]
    if concept is not None:
        clauses.append("co.name = :concept")
        params["concept"] = concept
    if status is not None:
        clauses.append("r.status = :status")
        params["status"] = status
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def list_models(session: Session) -> list[ModelRow]:
    """Every catalogued model with its counts of layers, complete runs and circuits."""
    table = query_arrow(
        session,
        "SELECT m.id, m.name, m.architecture, m.weights_sha256, coalesce(l.n, 0) AS layers, "
        "coalesce(r.n, 0) AS runs, coalesce(c.n, 0) AS circuits FROM model m "
        "LEFT JOIN (SELECT model_id, count(*) AS n FROM layer GROUP BY model_id) l ON l.model_id = m.id "
        f"LEFT JOIN (SELECT r.model_id, count(*) AS n FROM run r WHERE {_COMPLETE} GROUP BY r.model_id) r "
        "ON r.model_id = m.id "
        "LEFT JOIN (SELECT r.model_id, count(*) AS n FROM circuit c JOIN run r ON r.id = c.run_id "
        f"WHERE {_COMPLETE} GROUP BY r.model_id) c ON c.model_id = m.id ORDER BY m.name, m.id",
    )
    return [
        ModelRow(r["id"], r["name"], r["architecture"], r["weights_sha256"][:12], r["layers"], r["runs"], r["circuits"])
        for r in table.to_pylist()
    ]


def list_concepts(session: Session, model: str | None = None) -> list[ConceptRow]:
    """Concepts (those with a run on `model`, if given) with counts of image sets, runs, circuits.

    Counts are of complete runs (on `model`, if given).
    """
    where, params = ("", {}) if model is None else (" AND m.name = :model", {"model": model.partition("@")[0]})
    table = query_arrow(
        session,
        "SELECT co.id, co.name, co.description, coalesce(e.n, 0) AS image_sets, coalesce(r.n, 0) AS runs, "
        "coalesce(c.n, 0) AS circuits FROM concept co "
        "LEFT JOIN (SELECT concept_id, count(DISTINCT image_set_sha256) AS n FROM example_image "
        "GROUP BY concept_id) e ON e.concept_id = co.id "
        "LEFT JOIN (SELECT r.concept_id, count(*) AS n FROM run r JOIN model m ON m.id = r.model_id "
        f"WHERE {_COMPLETE}{where} GROUP BY r.concept_id) r ON r.concept_id = co.id "
        "LEFT JOIN (SELECT r.concept_id, count(*) AS n FROM circuit c JOIN run r ON r.id = c.run_id "
        f"JOIN model m ON m.id = r.model_id WHERE {_COMPLETE}{where} GROUP BY r.concept_id) c "
        "ON c.concept_id = co.id ORDER BY co.name",
        params,
    )
    rows = [ConceptRow(**r) for r in table.to_pylist()]
    return rows if model is None else [r for r in rows if r.runs > 0]


def list_runs(
    session: Session, model: str | None = None, concept: str | None = None, status: str | None = None
) -> list[RunRow]:
    """Runs, oldest first, filtered by model name, concept name and status.

    Raises:
        CircuitsError: unknown status.
    """
    _check_status(status)
    where, params = _filters(model, concept, status)
    table = query_arrow(
        session,
        "SELECT r.id, m.name AS model, co.name AS concept, r.status, r.layer_names, r.n_images AS images, "
        "r.device, r.started_at AS started, r.seconds, coalesce(c.n, 0) AS circuits "
        "FROM run r JOIN model m ON m.id = r.model_id JOIN concept co ON co.id = r.concept_id "
        "LEFT JOIN (SELECT run_id, count(*) AS n FROM circuit GROUP BY run_id) c ON c.run_id = r.id"
        f"{where} ORDER BY r.id",
        params,
    )
    out = []
    for r in table.to_pylist():
        layers = decode_json(r.pop("layer_names"))
        out.append(RunRow(layers=len(layers), **r))
    return out


def list_circuits(
    session: Session, model: str | None = None, concept: str | None = None, status: str | None = RunStatus.complete
) -> list[CircuitRow]:
    """Circuits, oldest first, filtered by model, concept and their run's status.

    Raises:
        CircuitsError: unknown status.
    """
    _check_status(status)
    where, params = _filters(model, concept, status)
    table = query_arrow(
        session,
        "SELECT c.id, c.run_id AS run, m.name AS model, co.name AS concept, coalesce(cn.n, 0) AS neurons, "
        "r.layer_names, c.sweeps, c.converged, c.objective, coalesce(i.n, 0) AS interventions, "
        "c.created_at AS created "
        "FROM circuit c JOIN run r ON r.id = c.run_id JOIN model m ON m.id = r.model_id "
        "JOIN concept co ON co.id = r.concept_id "
        "LEFT JOIN (SELECT circuit_id, count(*) AS n FROM circuit_neuron GROUP BY circuit_id) cn "
        "ON cn.circuit_id = c.id "
        "LEFT JOIN (SELECT circuit_id, count(*) AS n FROM intervention GROUP BY circuit_id) i "
        f"ON i.circuit_id = c.id{where} ORDER BY c.id",
        params,
    )
    out = []
    for r in table.to_pylist():
        layers = decode_json(r.pop("layer_names"))
        out.append(CircuitRow(layers=len(layers), **r))
    return out


# ---------------------------------------------------------------- one circuit


@dataclass(frozen=True)
class CircuitDetails:
    """Everything the catalog knows about one circuit (`circuits show`; `circuits.cli.render_details` renders it).

    Attributes:
        circuit: the circuit with its channels per layer.
        run: the run it was found on.
        interventions: its interventions with their evaluation rows, oldest first.
    """

    circuit: store.CircuitRef
    run: store.RunRef
    interventions: tuple[store.InterventionRef, ...]


def circuit_details(session: Session, circuit_id: int) -> CircuitDetails:
    """One circuit with its run and interventions.

    Raises:
        NotFound: no such circuit.
    """
    circuit = store.read_circuit(session, circuit_id)
    run = store.read_run(session, circuit.run_id)
    return CircuitDetails(circuit, run, tuple(store.list_interventions(session, circuit_id)))
