"""The evidence a prune plan ranks on: the stored evaluations of a model's circuits, which image
sets stand for which concept, and the `circuits ablate` command that would add missing evidence.

Part of `queries.prune_plan` (the ranking lives there); these functions only read the catalog.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from catalog.image_set_names import parse_image_set_name
from catalog.sql import decode_json, query_arrow
from catalog.vocab import InterventionKind
from queries.resolve import COMPLETE_RUN, ModelChoice

__all__ = ["EvalRow", "ablate_command", "concept_image_sets", "evaluations", "image_set_concept", "images_option"]


def image_set_concept(image_set: str) -> str:
    """The concept name an evaluated image set's name stands for (`catalog.image_set_names`).

    ``catfish:NAME#seed=1`` → NAME, ``dir:/data/NAME`` → NAME, anything else unchanged.
    """
    return parse_image_set_name(image_set).concept


@dataclass(frozen=True)
class EvalRow:
    """One stored evaluation of one of the model's circuits (a row of `evaluations`)."""

    circuit_id: int
    group: tuple[int, str, int | None]  # (circuit, kind, edge pair)
    edge_fraction: float
    image_set: str
    sha: str
    metric: str
    clean: float | None
    value: float
    baseline: float | None


def evaluations(session: Session, model: ModelChoice) -> tuple[list[EvalRow], dict[int, tuple[str, int]]]:
    """Every evaluation of the model's circuits (oldest first) and circuit id → (concept, run)."""
    table = query_arrow(
        session,
        "SELECT c.id AS circuit_id, co.name AS concept, c.run_id AS run_id, i.kind AS kind, i.params AS params, "
        "i.edge_fraction AS edge_fraction, ev.image_set AS image_set, ev.image_set_sha256 AS sha, "
        "ev.metric AS metric, ev.clean_value AS clean, ev.value AS value, ev.baseline_value AS baseline "
        f"FROM circuit c JOIN run r ON r.id = c.run_id AND {COMPLETE_RUN} "
        "JOIN concept co ON co.id = r.concept_id "
        "LEFT JOIN intervention i ON i.circuit_id = c.id LEFT JOIN evaluation ev ON ev.intervention_id = i.id "
        "WHERE r.model_id = :m ORDER BY c.id, i.id, ev.id",
        {"m": model.id},
    )
    rows, info = [], {}
    for r in table.to_pylist():
        info[int(r["circuit_id"])] = (r["concept"], int(r["run_id"]))
        if r["metric"] is None:
            continue
        params = decode_json(r["params"])
        pair = int(params.get("pair", 0)) if r["kind"] == InterventionKind.edge and isinstance(params, dict) else None
        rows.append(
            EvalRow(
                int(r["circuit_id"]),
                (int(r["circuit_id"]), r["kind"], pair),
                float(r["edge_fraction"]),
                r["image_set"],
                r["sha"],
                r["metric"],
                r["clean"],
                float(r["value"]),
                r["baseline"],
            )
        )
    return rows, info


def concept_image_sets(session: Session, concepts: Sequence[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    """Per concept, its example image-set hashes (and runs' image sets) and image sources."""
    table = query_arrow(
        session,
        "SELECT co.name AS concept, e.image_set_sha256 AS sha, e.source_path AS source FROM concept co "
        "JOIN example_image e ON e.concept_id = co.id WHERE co.name = ANY(:names) "
        "UNION ALL SELECT co.name, r.image_set_sha256, NULL FROM concept co JOIN run r ON r.concept_id = co.id "
        "WHERE co.name = ANY(:names)",
        {"names": list(concepts)},
    )
    out: dict[str, dict[str, set[str]]] = {}
    for r in table.to_pylist():
        entry = out.setdefault(r["concept"], {"shas": set(), "sources": set()})
        entry["shas"].add(r["sha"])
        if r["source"]:
            entry["sources"].add(r["source"])
    return {k: {"shas": tuple(sorted(v["shas"])), "sources": tuple(sorted(v["sources"]))} for k, v in out.items()}


def ablate_command(
    circuit_id: int,
    kind: str,
    concept: str,
    sets: dict[str, tuple[str, ...]],
    evals: Sequence[EvalRow],
    model_flags: str = "",
) -> str:
    """The `circuits ablate` command that evaluates a circuit on a concept's images.

    `model_flags` (`queries.suggest.ablate_model_flags`) adds --model/--weights when the circuit's
    model needs them, so the command runs as printed.
    """
    images = images_option(concept, sets, evals)
    if "  (" in images:  # the options go before the trailing explanation
        images, _, note = images.partition("  (")
        return f"circuits ablate {circuit_id} --kind {kind} {images}{model_flags}  ({note}"
    return f"circuits ablate {circuit_id} --kind {kind} {images}{model_flags}"


def images_option(concept: str, sets: dict[str, tuple[str, ...]], evals: Sequence[EvalRow]) -> str:
    """How to name a concept's images on the command line, from what the catalog knows of them."""
    names = [e.image_set for e in evals if image_set_concept(e.image_set) == concept or e.image_set == concept]
    names += list(sets.get("sources", ()))
    for name in names:
        if name.startswith("catfish:"):
            return f"--dataset catfish:{image_set_concept(name)}"
        if name.startswith("dir:"):
            return f"--images {name[4:]}"
    files = [s for s in sets.get("sources", ()) if os.sep in s or "/" in s]
    if files:
        return f"--images {os.path.commonpath([os.path.dirname(f) for f in files])}"
    return f"--dataset catfish:{concept}  (or --images DIR with {concept} images and --label)"
