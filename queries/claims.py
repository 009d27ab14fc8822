"""The paper's three CatFish claims — composition, reuse, causality — measured from the catalog.

`circuits demo` ingests a circuit per CatFish concept and prunes every primitive's circuit on
every class; this module reads what it stored and judges the claims, so a notebook can re-check
them on any catalog that holds such circuits and interventions:

    with cat.session() as s:
        report = catfish_claims(s, CLASS_PARTS, circuit_ids, intervention_ids)
    print(report_markdown(report, catalog=cat.display, seconds=seconds))

Neurons are compared as (layer index in the run, channel) pairs; accuracy drops are
`clean − pruned` top-1 accuracy (and `clean − random baseline`), from the stored evaluations.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.orm import Session

from catalog import store
from catalog.errors import NotFound
from catalog.sql import query_arrow
from catalog.vocab import Metric

__all__ = [
    "Claim",
    "ClaimsReport",
    "catfish_claims",
    "causality_claim",
    "composition_claim",
    "jaccard",
    "report_markdown",
    "reuse_claim",
]

Neurons = set[tuple[int, int]]
"""A circuit's neurons as (layer index in its run, channel) pairs."""


@dataclass(frozen=True)
class Claim:
    """One claim, judged.

    Attributes:
        name: "composition", "reuse" or "causality".
        holds: whether the measurements support it.
        summary: one line with the figures.
        figures: the measured numbers by name.
    """

    name: str
    holds: bool
    summary: str
    figures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ClaimsReport:
    """The three claims with what they were measured on.

    Attributes:
        claims: composition, reuse, causality.
        parts: class → its two primitives.
        neurons: concept → its circuit's neurons.
        drops: (primitive, class) → (accuracy drop of the primitive's circuit, of the random one).
    """

    claims: tuple[Claim, ...]
    parts: dict[str, tuple[str, str]]
    neurons: dict[str, Neurons]
    drops: dict[tuple[str, str], tuple[float, float]]

    def overlap(self, concepts: list[str]) -> np.ndarray:
        """Jaccard overlap of the concepts' circuits, (len(concepts), len(concepts))."""
        return np.array([[jaccard(self.neurons[a], self.neurons[b]) for b in concepts] for a in concepts])


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b| (0 for two empty sets)."""
    return len(a & b) / len(a | b) if a | b else 0.0


def composition_claim(parts: Mapping[str, tuple[str, str]], neurons: Mapping[str, Neurons]) -> Claim:
    """Each class circuit overlaps more with its two primitives' circuits than with the others'.

    A class counts when the mean Jaccard with its own two primitives' circuits exceeds the mean
    with the other primitives' circuits. The stricter count (both own primitives above every
    other primitive) is reported beside it.
    """
    primitives = sorted({p for pair in parts.values() for p in pair})
    own_all, other_all, holds, strict = [], [], 0, 0
    for cls, pair in parts.items():
        own = [jaccard(neurons[cls], neurons[p]) for p in pair]
        other = [jaccard(neurons[cls], neurons[p]) for p in primitives if p not in pair]
        own_all += own
        other_all += other
        holds += float(np.mean(own)) > float(np.mean(other))
        strict += min(own) > max(other)
    n = len(parts)
    f = {
        "classes_holding": holds,
        "classes_holding_strict": strict,
        "classes": n,
        "mean_jaccard_own": float(np.mean(own_all)),
        "mean_jaccard_other": float(np.mean(other_all)),
    }
    return Claim(
        "composition",
        holds == n,
        f"{holds}/{n} classes overlap their own two primitives' circuits more than the others' on average "
        f"(strictly, both above every other primitive: {strict}/{n}); mean Jaccard own "
        f"{f['mean_jaccard_own']:.3f} vs other {f['mean_jaccard_other']:.3f}",
        f,
    )


def reuse_claim(parts: Mapping[str, tuple[str, str]], neurons: Mapping[str, Neurons]) -> Claim:
    """Class pairs that share a primitive have more circuit overlap than pairs that share none."""
    shared: list[float] = []
    disjoint: list[float] = []
    for a, b in itertools.combinations(sorted(parts), 2):
        j = jaccard(neurons[a], neurons[b])
        (shared if set(parts[a]) & set(parts[b]) else disjoint).append(j)
    f = {
        "mean_jaccard_sharing": float(np.mean(shared)),
        "mean_jaccard_disjoint": float(np.mean(disjoint)),
        "pairs_sharing": len(shared),
        "pairs_disjoint": len(disjoint),
    }
    return Claim(
        "reuse",
        f["mean_jaccard_sharing"] > f["mean_jaccard_disjoint"],
        f"class pairs sharing a primitive: mean Jaccard {f['mean_jaccard_sharing']:.3f} ({len(shared)} pairs); "
        f"sharing none: {f['mean_jaccard_disjoint']:.3f} ({len(disjoint)} pairs)",
        f,
    )


def causality_claim(
    parts: Mapping[str, tuple[str, str]], drops: Mapping[tuple[str, str], tuple[float, float]]
) -> Claim:
    """Pruning primitive P hurts classes containing P far more than others, and than random.

    Args:
        parts: class → its two primitives.
        drops: (primitive, class) → (accuracy drop of the circuit, of the random baseline).
    """
    with_p = [d for (p, c), (d, _) in drops.items() if p in parts[c]]
    without_p = [d for (p, c), (d, _) in drops.items() if p not in parts[c]]
    random_with_p = [r for (p, c), (_, r) in drops.items() if p in parts[c]]
    f = {
        "drop_with": float(np.mean(with_p)),
        "drop_without": float(np.mean(without_p)),
        "drop_random": float(np.mean(random_with_p)),
    }
    holds = f["drop_with"] > 2 * max(f["drop_without"], 0.0) and f["drop_with"] > 2 * max(f["drop_random"], 0.0)
    return Claim(
        "causality",
        holds,
        f"mean top-1 accuracy drop when pruning primitive P's circuit: classes containing P "
        f"{100 * f['drop_with']:.1f} pts, classes without P {100 * f['drop_without']:.1f} pts, "
        f"random circuit of the same shape on classes containing P {100 * f['drop_random']:.1f} pts",
        f,
    )


def catfish_claims(
    session: Session,
    parts: Mapping[str, tuple[str, str]],
    circuits: Mapping[str, int],
    interventions: Mapping[tuple[str, str], int],
) -> ClaimsReport:
    """Judge the three claims from stored circuits and circuit-pruning evaluations.

    Args:
        session: the caller's session.
        parts: class → its two primitives (`ingest.datasets.catfish.CLASS_PARTS`).
        circuits: concept (every primitive and class) → its circuit id.
        interventions: (primitive, class) → the id of the intervention that pruned the
            primitive's circuit and was evaluated on the class's images (accuracy).

    Returns:
        The claims with the neurons and accuracy drops they were measured on.

    Raises:
        NotFound: a circuit, or an intervention's accuracy evaluation, is not in the catalog.
    """
    refs = {c.id: c for c in store.read_circuits(session, sorted(set(circuits.values())))}
    missing = sorted(str(i) for i in set(circuits.values()) - set(refs))
    if missing:
        raise NotFound(f"no circuit {', '.join(missing)} in the catalog: run `circuits demo` to ingest them")
    neurons = {
        name: {(i, c) for i, layer in enumerate(refs[cid].channels) for c in layer} for name, cid in circuits.items()
    }
    table = query_arrow(
        session,
        "SELECT intervention_id, clean_value, value, baseline_value FROM evaluation "
        "WHERE intervention_id = ANY(:ids) AND metric = :metric ORDER BY id",
        {"ids": sorted(set(interventions.values())), "metric": Metric.accuracy.value},
    )
    accuracy = {int(r["intervention_id"]): r for r in table.to_pylist()}  # the newest row wins
    drops: dict[tuple[str, str], tuple[float, float]] = {}
    for key, iid in interventions.items():
        row = accuracy.get(int(iid))
        if row is None:
            raise NotFound(
                f"intervention {iid} ({key[0]} on {key[1]}) has no accuracy evaluation in the catalog: "
                "run `circuits demo` to evaluate it"
            )
        drops[key] = (row["clean_value"] - row["value"], row["clean_value"] - row["baseline_value"])
    claims = (composition_claim(parts, neurons), reuse_claim(parts, neurons), causality_claim(parts, drops))
    return ClaimsReport(claims, dict(parts), neurons, drops)


def report_markdown(report: ClaimsReport, *, catalog: str, seconds: float, settings: str = "") -> str:
    """The demo's Markdown report: the claims table and the accuracy drops per primitive and class.

    Args:
        report: from `catfish_claims`.
        catalog: where the circuits are (path or URL without password).
        seconds: how long the demo took.
        settings: what the circuits and interventions were made with, one sentence or more
            (k, images, seeds), stated after the catalog.
    """
    lines = [
        "# circuits demo: catfish-mini on CatFish-synth",
        "",
        " ".join(filter(None, (f"Catalog: `{catalog}`.", settings, f"Finished in {seconds:.0f} s."))),
        "",
        "| claim | holds | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {c.name} | {'yes' if c.holds else 'NO'} | {c.summary} |" for c in report.claims]
    lines += ["", "## Accuracy drop (points) when pruning each primitive's circuit", ""]
    classes = list(report.parts)
    prims = sorted({p for p, _ in report.drops})
    lines.append("| primitive | " + " | ".join(classes) + " |")
    lines.append("|---" * (len(classes) + 1) + "|")
    for p in prims:
        cells = []
        for c in classes:
            d, r = report.drops[(p, c)]
            mark = "**" if p in report.parts[c] else ""
            cells.append(f"{mark}{100 * d:.0f}{mark} ({100 * r:.0f})")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines += ["", "Bold: the class contains the primitive. In brackets: a random circuit of the same shape.", ""]
    return "\n".join(lines)
