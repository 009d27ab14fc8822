"""Composition: how much of a (class) circuit the union of some concept circuits covers, per layer.

A neuron of the circuit is *covered* when it belongs to at least one of the concept circuits
(neurons are (layer, channel) of the model, so circuits of different runs of one model compare
directly). Concept circuits are chosen as everywhere in `queries`: the newest circuit of the
concept's newest complete run on the circuit's model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from catalog.errors import CircuitsError, NotFound
from catalog.sql import decode_json, query_arrow
from queries.graphs import column
from queries.overlap import circuit_members
from queries.resolve import COMPLETE_RUN, ModelChoice, choice_notes, concept_circuits

__all__ = ["Composition", "LayerCoverage", "compose_circuit"]


@dataclass(frozen=True)
class LayerCoverage:
    """Coverage of one layer of the circuit (or of all of it, with layer "total").

    Attributes:
        layer: layer name, or "total".
        position: the layer's index in the model's layer order (-1 for the total).
        neurons: the circuit's neurons in the layer.
        covered: how many of them are in at least one concept circuit.
        by_concept: per concept (in `Composition.concepts` order), how many it covers alone.
    """

    layer: str
    position: int
    neurons: int
    covered: int
    by_concept: tuple[int, ...]

    @property
    def fraction(self) -> float:
        """covered / neurons (0 for an empty layer)."""
        return self.covered / self.neurons if self.neurons else 0.0


@dataclass(frozen=True)
class Composition:
    """The answer of `compose_circuit`."""

    circuit_id: int
    concept: str
    model: str
    concepts: tuple[str, ...]
    concept_circuit_ids: tuple[int, ...]
    layers: tuple[LayerCoverage, ...]
    total: LayerCoverage
    notes: tuple[str, ...] = ()

    def rows(self) -> list[dict[str, object]]:
        """One dict per layer and a last one for the total."""
        return [
            {
                "layer": c.layer,
                "neurons": c.neurons,
                "covered": c.covered,
                "fraction": round(c.fraction, 4),
                **{f"by {name}": n for name, n in zip(self.concepts, c.by_concept)},
            }
            for c in (*self.layers, self.total)
        ]


def compose_circuit(session: Session, circuit_id: int, concepts: Sequence[str]) -> Composition:
    """Per layer, how much of a circuit the union of the given concepts' circuits covers.

    Args:
        session: the caller's session.
        circuit_id: the circuit to explain (typically a class circuit).
        concepts: one or more concept names with circuits on the same model.

    Returns:
        Coverage per layer of the circuit's run (forward order) and in total.

    Raises:
        NotFound: no such circuit, or a concept without a circuit on the circuit's model.
        CircuitsError: no concepts given.
    """
    if not concepts:
        raise CircuitsError("give the concepts to compose from, e.g. `concepts=` star,wave")
    head = query_arrow(
        session,
        "SELECT c.id, r.layer_names, co.name AS concept, m.id AS model_id, m.name AS model, "
        f"m.weights_sha256 AS sha FROM circuit c JOIN run r ON r.id = c.run_id AND {COMPLETE_RUN} "
        "JOIN concept co ON co.id = r.concept_id JOIN model m ON m.id = r.model_id WHERE c.id = :c",
        {"c": int(circuit_id)},
    )
    if head.num_rows == 0:
        raise NotFound(f"no circuit {circuit_id} in the catalog: `circuits list circuits` lists them")
    info = head.to_pylist()[0]
    model = ModelChoice(int(info["model_id"]), info["model"], info["sha"])
    chosen = concept_circuits(session, model, list(dict.fromkeys(concepts)))
    members = circuit_members(session, [int(circuit_id), *(c.circuit_id for c in chosen)])
    cid = column(members, "circuit_id", np.int64)
    nid = column(members, "neuron_id", np.int64)
    mine = np.nonzero(cid == int(circuit_id))[0]
    target = nid[mine]  # (K,) the circuit's neurons
    in_concept = np.stack([np.isin(target, nid[cid == c.circuit_id]) for c in chosen])  # (concepts, K)
    covered = np.asarray(in_concept.any(axis=0))  # (K,)
    layer_of = np.asarray(members.column("layer").to_pylist(), dtype=object)[mine]
    position_of = column(members, "position", np.int64)[mine]
    layer_names = decode_json(info["layer_names"])
    layers = []
    for name in layer_names:
        here = layer_of == name
        pos = int(position_of[here][0]) if here.any() else _position(session, model.id, name)
        layers.append(
            LayerCoverage(
                name,
                pos,
                int(here.sum()),
                int(covered[here].sum()),
                tuple(int(row[here].sum()) for row in in_concept),
            )
        )
    total = LayerCoverage("total", -1, len(target), int(covered.sum()), tuple(int(row.sum()) for row in in_concept))
    return Composition(
        int(circuit_id),
        info["concept"],
        model.name,
        tuple(c.concept for c in chosen),
        tuple(c.circuit_id for c in chosen),
        tuple(layers),
        total,
        choice_notes(chosen),
    )


def _position(session: Session, model_id: int, layer: str) -> int:
    table = query_arrow(
        session, "SELECT position FROM layer WHERE model_id = :m AND name = :n", {"m": model_id, "n": layer}
    )
    return int(table.column("position")[0].as_py()) if table.num_rows else -1
