"""Listings of the catalog (models, concepts, runs, circuits) and everything about one circuit.

Each listing is one query built with joins and grouped counts, whatever the number of rows;
`circuit_details` reads one circuit, its run and its interventions in a fixed number of queries.
Every function takes a Session and returns plain frozen dataclasses. Resolving names (a model,
a circuit by id or concept) lives in `queries.resolve`; its names are re-exported here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Unpack

from sqlalchemy.orm import Session

from catalog import store
from catalog.sql import decode_json, query_arrow
from catalog.vocab import RunStatus
from queries._listing_sql import SOURCES, Window, filters, limit_clause, window_of
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
    "Window",
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
    weights: str = ""  # where the weights came from (file, bundled, cache, RANDOM-INIT); '' when not recorded


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


def list_models(session: Session, **window: Unpack[Window]) -> list[ModelRow]:
    """Catalogued models by name (then id) with their counts of layers, complete runs and circuits.

    Args:
        session: the caller's session.
        window: `search` (name, architecture or id), `after`, `limit` (`Window`).
    """
    search, after, limit = window_of("list_models", window)
    where, params = filters("models", search, after)
    table = query_arrow(
        session,
        f"WITH page AS (SELECT m.id, m.name, m.architecture, m.weights_sha256 {SOURCES['models'].tables}"
        f"{where} ORDER BY m.name, m.id{limit_clause(limit)}) "
        "SELECT p.id, p.name, p.architecture, p.weights_sha256, coalesce(l.n, 0) AS layers, "
        "coalesce(r.n, 0) AS runs, coalesce(c.n, 0) AS circuits FROM page p "
        "LEFT JOIN (SELECT model_id, count(*) AS n FROM layer WHERE model_id IN (SELECT id FROM page) "
        "GROUP BY model_id) l ON l.model_id = p.id "
        f"LEFT JOIN (SELECT r.model_id, count(*) AS n FROM run r WHERE {_COMPLETE} "
        "AND r.model_id IN (SELECT id FROM page) GROUP BY r.model_id) r ON r.model_id = p.id "
        "LEFT JOIN (SELECT r.model_id, count(*) AS n FROM circuit c JOIN run r ON r.id = c.run_id "
        f"WHERE {_COMPLETE} AND r.model_id IN (SELECT id FROM page) GROUP BY r.model_id) c ON c.model_id = p.id "
        "ORDER BY p.name, p.id",
        params,
    )
    return [
        ModelRow(r["id"], r["name"], r["architecture"], r["weights_sha256"][:12], r["layers"], r["runs"], r["circuits"])
        for r in table.to_pylist()
    ]


def list_concepts(session: Session, model: str | None = None, **window: Unpack[Window]) -> list[ConceptRow]:
    """Concepts by name (those with a complete run on `model`, if given) with counts of image sets,
    runs and circuits. Counts are of complete runs (on `model`, if given).

    Args:
        session: the caller's session.
        model: only concepts with a complete run on this model.
        window: `search` (name, description or id), `after`, `limit` (`Window`).
    """
    search, after, limit = window_of("list_concepts", window)
    where, params = filters("concepts", search, after, model=model)
    on_model = "" if model is None else " AND m.name = :model"  # the counts too are of runs on it
    table = query_arrow(
        session,
        f"WITH page AS (SELECT co.id, co.name, co.description {SOURCES['concepts'].tables}"
        f"{where} ORDER BY co.name{limit_clause(limit)}) "
        "SELECT p.id, p.name, p.description, coalesce(e.n, 0) AS image_sets, coalesce(r.n, 0) AS runs, "
        "coalesce(c.n, 0) AS circuits FROM page p "
        "LEFT JOIN (SELECT concept_id, count(DISTINCT image_set_sha256) AS n FROM example_image "
        "WHERE concept_id IN (SELECT id FROM page) GROUP BY concept_id) e ON e.concept_id = p.id "
        "LEFT JOIN (SELECT r.concept_id, count(*) AS n FROM run r JOIN model m ON m.id = r.model_id "
        f"WHERE {_COMPLETE}{on_model} AND r.concept_id IN (SELECT id FROM page) GROUP BY r.concept_id) r "
        "ON r.concept_id = p.id "
        "LEFT JOIN (SELECT r.concept_id, count(*) AS n FROM circuit c JOIN run r ON r.id = c.run_id "
        f"JOIN model m ON m.id = r.model_id WHERE {_COMPLETE}{on_model} AND r.concept_id IN (SELECT id FROM page) "
        "GROUP BY r.concept_id) c ON c.concept_id = p.id ORDER BY p.name",
        params,
    )
    return [ConceptRow(**r) for r in table.to_pylist()]


def _weights_kind(lib) -> str:
    """The kind of a run's weights source, upper case when untrained (a reader must not miss it)."""
    source = str((decode_json(lib) or {}).get("weights_source", ""))
    kind = source.split(":", 1)[0]
    return "RANDOM-INIT" if kind == "random-init" else kind


def list_runs(
    session: Session,
    model: str | None = None,
    concept: str | None = None,
    status: str | None = None,
    **window: Unpack[Window],
) -> list[RunRow]:
    """Runs, oldest (lowest id) first, filtered by model name, concept name and status.

    Args:
        session: the caller's session.
        model, concept, status: filters (exact).
        window: `search` (model, concept, id or status), `after`, `limit` (`Window`).

    Raises:
        CircuitsError: unknown status, or a limit below 1.
    """
    search, after, limit = window_of("list_runs", window)
    where, params = filters("runs", search, after, model=model, concept=concept, status=status)
    table = query_arrow(
        session,
        "WITH page AS (SELECT r.id, m.name AS model, co.name AS concept, r.status, r.layer_names, "
        "r.n_images AS images, r.device, r.started_at AS started, r.seconds, r.library_versions AS lib "
        f"{SOURCES['runs'].tables}{where} ORDER BY r.id{limit_clause(limit)}) "
        "SELECT p.*, coalesce(c.n, 0) AS circuits FROM page p "
        "LEFT JOIN (SELECT run_id, count(*) AS n FROM circuit WHERE run_id IN (SELECT id FROM page) "
        "GROUP BY run_id) c ON c.run_id = p.id ORDER BY p.id",
        params,
    )
    out = []
    for r in table.to_pylist():
        layers = decode_json(r.pop("layer_names"))
        out.append(RunRow(layers=len(layers), weights=_weights_kind(r.pop("lib")), **r))
    return out


def list_circuits(
    session: Session,
    model: str | None = None,
    concept: str | None = None,
    status: str | None = RunStatus.complete,
    **window: Unpack[Window],
) -> list[CircuitRow]:
    """Circuits, oldest (lowest id) first, filtered by model, concept and their run's status.

    Args:
        session: the caller's session.
        model, concept, status: filters (exact; status is the run's).
        window: `search` (model, concept or id), `after`, `limit` (`Window`).

    Raises:
        CircuitsError: unknown status, or a limit below 1.
    """
    search, after, limit = window_of("list_circuits", window)
    where, params = filters("circuits", search, after, model=model, concept=concept, status=status)
    table = query_arrow(
        session,
        "WITH page AS (SELECT c.id, c.run_id AS run, m.name AS model, co.name AS concept, r.layer_names, "
        f"c.sweeps, c.converged, c.objective, c.created_at AS created {SOURCES['circuits'].tables}{where} "
        f"ORDER BY c.id{limit_clause(limit)}) "
        "SELECT p.*, coalesce(cn.n, 0) AS neurons, coalesce(i.n, 0) AS interventions FROM page p "
        "LEFT JOIN (SELECT circuit_id, count(*) AS n FROM circuit_neuron WHERE circuit_id IN (SELECT id FROM page) "
        "GROUP BY circuit_id) cn ON cn.circuit_id = p.id "
        "LEFT JOIN (SELECT circuit_id, count(*) AS n FROM intervention WHERE circuit_id IN (SELECT id FROM page) "
        "GROUP BY circuit_id) i ON i.circuit_id = p.id ORDER BY p.id",
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
    labels: dict[str, dict[int, str]] = field(default_factory=dict)  # layer -> channel -> label (class names)

    def neuron_text(self, layer: str, channel: int) -> str:
        """`layer:channel`, with the neuron's label (a logit's class name) when it has one."""
        return neuron_text(layer, channel, self.labels.get(layer, {}).get(channel))


def neuron_text(layer: str, channel: int, label: str | None = None) -> str:
    """How a neuron is shown everywhere: `_fc:285 (Egyptian cat)`, or `_fc:285` without a label."""
    return f"{layer}:{channel}" + (f" ({label})" if label else "")


def circuit_details(session: Session, circuit_id: int) -> CircuitDetails:
    """One circuit with its run and interventions.

    Raises:
        NotFound: no such circuit.
    """
    circuit = store.read_circuit(session, circuit_id)
    run = store.read_run(session, circuit.run_id)
    labels = {layer: found for layer in run.layer_names if (found := store.neuron_labels(session, run.model_id, layer))}
    return CircuitDetails(circuit, run, tuple(store.list_interventions(session, circuit_id)), labels)
