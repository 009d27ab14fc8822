"""Finding things in the catalog: models, concepts, runs and circuits by name, and listings of them.

The other query modules resolve their arguments here: `--model NAME` (or ``NAME@SHA256PREFIX``
when one name has several weights), a circuit given as an id or a concept name, and the circuit
that stands for a concept (the newest circuit of the concept's newest complete run that has one).
Every function takes a Session and returns plain frozen dataclasses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from catalog import store
from catalog.errors import CircuitsError, NotFound
from catalog.vocab import RunStatus
from catalog.sql import decode_json, query_arrow

__all__ = [
    "ModelChoice",
    "CircuitChoice",
    "ModelRow",
    "ConceptRow",
    "RunRow",
    "CircuitRow",
    "CircuitDetails",
    "resolve_model",
    "choice_notes",
    "concept_circuits",
    "resolve_circuit",
    "list_models",
    "list_concepts",
    "list_runs",
    "list_circuits",
    "circuit_details",
]


_COMPLETE = f"r.status = '{RunStatus.complete.value}'"
"""SQL: the run aliased `r` is complete (only complete runs count in listings)."""


@dataclass(frozen=True)
class ModelChoice:
    """A catalogued model (name + weights)."""

    id: int
    name: str
    weights_sha256: str


@dataclass(frozen=True)
class CircuitChoice:
    """The circuit that stands for a concept in a query.

    Attributes:
        circuit_id: the chosen circuit.
        run_id: its run.
        concept: the concept's name.
        n_circuits: how many circuits the concept has on this model (complete runs only); more
            than one means the newest of the newest run was taken.
    """

    circuit_id: int
    run_id: int
    concept: str
    n_circuits: int

    @property
    def note(self) -> str | None:
        """A line saying which circuit was chosen, when the concept had several."""
        if self.n_circuits < 2:
            return None
        return (
            f"concept {self.concept} has {self.n_circuits} circuits: using circuit {self.circuit_id} "
            f"(newest of its newest complete run, {self.run_id})"
        )


def choice_notes(choices: Sequence[CircuitChoice], limit: int = 3) -> tuple[str, ...]:
    """Lines saying which circuit stands for each concept that has several (one line past `limit`)."""
    several = [c for c in choices if c.n_circuits > 1]
    if len(several) <= limit:
        return tuple(c.note for c in several if c.note)
    listed = ", ".join(f"{c.concept} #{c.circuit_id}" for c in several)
    return (
        f"{len(several)} concepts have several circuits; each stands for the newest circuit of its "
        f"newest complete run: {listed}",
    )


def resolve_model(session: Session, name: str) -> ModelChoice:
    """The model called `name`, or ``name@SHA256PREFIX`` to pick one of several weights.

    Args:
        session: the caller's session.
        name: model name, optionally with ``@`` and a prefix of its weights sha256.

    Returns:
        The model.

    Raises:
        NotFound: no such model.
        CircuitsError: several weights match; the message lists them.
    """
    base, _, prefix = name.partition("@")
    table = query_arrow(
        session,
        "SELECT id, name, weights_sha256 FROM model WHERE name = :name ORDER BY id",
        {"name": base},
    )
    rows = [r for r in table.to_pylist() if r["weights_sha256"].startswith(prefix.lower())]
    if not rows:
        known = query_arrow(session, "SELECT DISTINCT name FROM model ORDER BY name").column("name").to_pylist()
        raise NotFound(
            f"no model {name!r} in the catalog (it has {', '.join(known) or 'none'}): "
            "ingest one with `circuits ingest MODEL --concept …`"
        )
    if len(rows) > 1:
        options = ", ".join(f"{base}@{r['weights_sha256'][:12]}" for r in rows)
        raise CircuitsError(f"model {base!r} has several weights in the catalog: name one of {options}")
    row = rows[0]
    return ModelChoice(int(row["id"]), row["name"], row["weights_sha256"])


def concept_circuits(
    session: Session, model: ModelChoice, concepts: Sequence[str] | None = None
) -> list[CircuitChoice]:
    """The circuit that stands for each concept of a model.

    A concept may have several runs and a run several circuits; the newest circuit of the newest
    complete run that has a circuit is taken (newest = highest id).

    Args:
        session: the caller's session.
        model: from `resolve_model`.
        concepts: concept names in the order wanted; None means every concept with a circuit on
            this model, by name.

    Returns:
        One choice per concept, in the order of `concepts` (or by name).

    Raises:
        NotFound: a named concept has no circuit on this model (the message lists those that do).
    """
    table = query_arrow(
        session,
        "SELECT c.id AS circuit_id, c.run_id AS run_id, co.name AS concept FROM circuit c "
        f"JOIN run r ON r.id = c.run_id AND {_COMPLETE} JOIN concept co ON co.id = r.concept_id "
        "WHERE r.model_id = :m ORDER BY co.name, c.run_id, c.id",
        {"m": model.id},
    )
    best: dict[str, CircuitChoice] = {}
    counts: dict[str, int] = {}
    for row in table.to_pylist():  # ordered by run then circuit id: the last one wins
        counts[row["concept"]] = counts.get(row["concept"], 0) + 1
        best[row["concept"]] = CircuitChoice(int(row["circuit_id"]), int(row["run_id"]), row["concept"], 0)
    names = sorted(best) if concepts is None else list(concepts)
    missing = [c for c in names if c not in best]
    if missing:
        raise NotFound(
            f"no circuit for {', '.join(missing)} on model {model.name} (concepts with circuits: "
            f"{', '.join(sorted(best)) or 'none'}): ingest it with "
            f"`circuits ingest {model.name} --concept {missing[0]} …`"
        )
    return [CircuitChoice(best[c].circuit_id, best[c].run_id, c, counts[c]) for c in names]


def resolve_circuit(session: Session, ref: str | int, model: str | None = None) -> CircuitChoice:
    """A circuit given as its id or as a concept name (the concept's newest circuit).

    Args:
        session: the caller's session.
        ref: a circuit id, or a concept name.
        model: the model, needed when the concept has circuits on several models.

    Returns:
        The circuit.

    Raises:
        NotFound: no such circuit or concept.
        CircuitsError: the concept has circuits on several models and `model` is None.
    """
    text_ref = str(ref).strip()
    if text_ref.isdigit():
        table = query_arrow(
            session,
            "SELECT c.id AS circuit_id, c.run_id AS run_id, co.name AS concept, r.status AS status "
            "FROM circuit c JOIN run r ON r.id = c.run_id JOIN concept co ON co.id = r.concept_id "
            "WHERE c.id = :c",
            {"c": int(text_ref)},
        )
        if table.num_rows == 0 or table.column("status")[0].as_py() != RunStatus.complete:
            raise NotFound(f"no circuit {text_ref} in the catalog: `circuits list circuits` lists them")
        row = table.to_pylist()[0]
        return CircuitChoice(int(row["circuit_id"]), int(row["run_id"]), row["concept"], 1)
    if model is not None:
        return concept_circuits(session, resolve_model(session, model), [text_ref])[0]
    table = query_arrow(
        session,
        "SELECT DISTINCT m.name AS model, m.weights_sha256 AS sha FROM circuit c "
        f"JOIN run r ON r.id = c.run_id AND {_COMPLETE} JOIN concept co ON co.id = r.concept_id "
        "JOIN model m ON m.id = r.model_id WHERE co.name = :name ORDER BY m.name",
        {"name": text_ref},
    )
    rows = table.to_pylist()
    if not rows:
        raise NotFound(
            f"{text_ref!r} is neither a circuit id nor a concept with a circuit: "
            "`circuits list circuits` lists them"
        )
    if len(rows) > 1:
        options = ", ".join(f"{r['model']}@{r['sha'][:12]}" for r in rows)
        raise CircuitsError(f"concept {text_ref} has circuits on several models ({options}): add --model")
    return concept_circuits(session, ModelChoice(*_model_id(session, rows[0]["model"], rows[0]["sha"])), [text_ref])[0]


def _model_id(session: Session, name: str, sha: str) -> tuple[int, str, str]:
    table = query_arrow(session, "SELECT id FROM model WHERE name = :n AND weights_sha256 = :s", {"n": name, "s": sha})
    return int(table.column("id")[0].as_py()), name, sha


# ---------------------------------------------------------------- listings


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
    clauses, params = [], {}
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
