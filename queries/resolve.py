"""Resolving what a user names: a model by name, a circuit by id or concept, a concept's circuit.

The other query modules resolve their arguments here: `--model NAME` (or ``NAME@SHA256PREFIX``
when one name has several weights), a circuit given as an id or a concept name, and the circuit
that stands for a concept (the newest circuit of the concept's newest complete run that has one).
Every function takes a Session and returns plain frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from catalog.errors import CircuitsError, NotFound
from catalog.sql import query_arrow
from catalog.vocab import RunStatus

__all__ = [
    "COMPLETE_RUN",
    "CircuitChoice",
    "ModelChoice",
    "choice_notes",
    "concept_circuits",
    "resolve_circuit",
    "resolve_model",
    "resolve_run",
]

COMPLETE_RUN = f"r.status = '{RunStatus.complete.value}'"
"""SQL: the run aliased `r` is complete (readers see complete runs only)."""
_SHOWN = 5  # names listed in a not-found message before "… and N more": a message stays one line


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
        f"JOIN run r ON r.id = c.run_id AND {COMPLETE_RUN} JOIN concept co ON co.id = r.concept_id "
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
            f"no circuit for {_first_few(missing)} on model {model.name} (concepts with circuits: "
            f"{_first_few(sorted(best), f'; `circuits list concepts --search {missing[0]}`') or 'none'}): "
            f"ingest it with `circuits ingest {model.name} --concept {missing[0]} …`"
        )
    return [CircuitChoice(best[c].circuit_id, best[c].run_id, c, counts[c]) for c in names]


def _first_few(names: Sequence[str], more_hint: str = "", shown: int = _SHOWN) -> str:
    """`names` joined by commas, cut after `shown` with "… and N more" (plus `more_hint`) so a message stays a line."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} … and {len(names) - shown} more{more_hint}"


def resolve_circuit(
    session: Session, ref: str | int, model: str | None = None, *, model_optional: bool = False
) -> CircuitChoice:
    """A circuit given as its id or as a concept name (the concept's newest circuit).

    All digits is an id (concept names cannot be all digits, `catalog.names`); a catalog made
    before that rule with a concept named like an id is told apart in the message.

    Args:
        session: the caller's session.
        ref: a circuit id, or a concept name.
        model: the model, needed when the concept has circuits on several models.
        model_optional: `model` may be a name the catalog does not have (e.g. `ablate --model
            file.py:factory`, which names code): it is then ignored for resolving.

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
            legacy = _has_concept(session, text_ref)
            raise NotFound(
                f"no circuit {text_ref} in the catalog: `circuits list circuits` lists them"
                + (
                    f" (a concept is named {text_ref!r}, but all digits means an id: rename the concept)"
                    if legacy
                    else ""
                )
            )
        row = table.to_pylist()[0]
        return CircuitChoice(int(row["circuit_id"]), int(row["run_id"]), row["concept"], 1)
    if model is not None and model_optional and not _has_model(session, model):
        model = None
    if model is not None:
        return concept_circuits(session, resolve_model(session, model), [text_ref])[0]
    table = query_arrow(
        session,
        "SELECT DISTINCT m.name AS model, m.weights_sha256 AS sha FROM circuit c "
        f"JOIN run r ON r.id = c.run_id AND {COMPLETE_RUN} JOIN concept co ON co.id = r.concept_id "
        "JOIN model m ON m.id = r.model_id WHERE co.name = :name ORDER BY m.name",
        {"name": text_ref},
    )
    rows = table.to_pylist()
    if not rows:
        raise NotFound(
            f"{text_ref!r} is neither a circuit id nor a concept with a circuit: `circuits list circuits` lists them"
        )
    if len(rows) > 1:
        options = ", ".join(f"{r['model']}@{r['sha'][:12]}" for r in rows)
        raise CircuitsError(f"concept {text_ref} has circuits on several models ({options}): add `model=`")
    return concept_circuits(session, ModelChoice(*_model_id(session, rows[0]["model"], rows[0]["sha"])), [text_ref])[0]


def resolve_run(session: Session, ref: str | int, model: str | None = None) -> int:
    """A complete run given as its id or as a concept name (the concept's newest complete run).

    Args:
        session: the caller's session.
        ref: a run id, or a concept name.
        model: the model, needed when the concept has runs on several models.

    Returns:
        The run id.

    Raises:
        NotFound: no such run or concept. CircuitsError: the concept is on several models.
    """
    text_ref = str(ref).strip()
    if text_ref.isdigit():
        table = query_arrow(session, "SELECT status FROM run WHERE id = :r", {"r": int(text_ref)})
        if table.num_rows == 0:
            raise NotFound(f"no run {text_ref} in the catalog: `circuits list runs` lists them")
        status = table.column("status")[0].as_py()
        if status != RunStatus.complete:
            raise NotFound(f"run {text_ref} is {status}, not complete: ingest it again")
        return int(text_ref)
    if model is not None:
        choice = resolve_model(session, model)
        where, params = "AND r.model_id = :m", {"m": choice.id}
    else:
        where, params = "", {}
    table = query_arrow(
        session,
        "SELECT r.id AS run_id, m.name AS model, m.weights_sha256 AS sha FROM run r "
        "JOIN concept co ON co.id = r.concept_id JOIN model m ON m.id = r.model_id "
        f"WHERE {COMPLETE_RUN} AND co.name = :name {where} ORDER BY r.id",
        {"name": text_ref, **params},
    )
    rows = table.to_pylist()
    if not rows:
        raise NotFound(
            f"{text_ref!r} is neither a run id nor a concept with a complete run: `circuits list runs` lists them"
        )
    models = sorted({f"{r['model']}@{r['sha'][:12]}" for r in rows})
    if len(models) > 1:
        raise CircuitsError(f"concept {text_ref} has runs on several models ({', '.join(models)}): add `model=`")
    return int(rows[-1]["run_id"])


def _has_concept(session: Session, name: str) -> bool:
    return query_arrow(session, "SELECT id FROM concept WHERE name = :n", {"n": name}).num_rows > 0


def _has_model(session: Session, name: str) -> bool:
    base = name.partition("@")[0]
    return query_arrow(session, "SELECT id FROM model WHERE name = :n", {"n": base}).num_rows > 0


def _model_id(session: Session, name: str, sha: str) -> tuple[int, str, str]:
    table = query_arrow(session, "SELECT id FROM model WHERE name = :n AND weights_sha256 = :s", {"n": name, "s": sha})
    return int(table.column("id")[0].as_py()), name, sha
