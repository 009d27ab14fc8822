"""Prune plans: which stored circuit to prune to suppress one behaviour and keep others.

`plan_pruning(session, model, against, keep)` looks at every circuit of the model (the concept's
circuit for every concept, plus every circuit with stored interventions) except the circuits of
the `keep` concepts, and ranks them:

* **evidence** — the circuit has an intervention evaluated on the `against` images (and on
  every `keep` concept's; **partial** when some are missing: ranked after complete evidence). An
  evaluation row belongs to a concept when its image-set sha256 is one of the concept's example
  image sets, or its name is the concept's (``catfish:NAME#seed=…``, ``dir:/…/NAME`` or ``NAME``).
  Per image set the metric is the first available of `AGAINST_METRICS` (against) or
  `KEEP_METRICS` (keep); its *drop* is clean − pruned. Score = drop on `against` − mean drop on
  the `keep` sets that have one; ties go to the intervention that cuts fewer edges. Interventions
  of one circuit, kind (and edge pair) are pooled, since `circuits ablate` stores one per image
  set; the newest row per image set and metric counts.
* **proxy** (no evidence yet) — structural: Jaccard(candidate, against's circuit) − mean
  Jaccard(candidate, keep circuits), clearly labelled, ranked after every evidence candidate.

**Keep budget.** A plan that destroys what the user asked to keep is no recommendation. Each keep
effect's *damage* is how far the pruned value falls below the random-circuit baseline of the same
evaluation (below the clean value when no baseline is stored); a candidate whose damage on some
keep concept exceeds `keep_budget` (default 0.02: two accuracy points) is labelled **over-budget**
and ranked after every other candidate, closest to the budget first. When no evaluated candidate
meets the budget, the plan's notes say so in one line.

For each missing evaluation the plan says which `circuits ablate` command would make it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from catalog.errors import CircuitsError, NotFound
from catalog.sql import query_arrow
from catalog.vocab import InterventionKind, Metric
from queries.overlap import overlap_of_circuits
from queries.prune_evidence import EvalRow, ablate_command, concept_image_sets, evaluations, image_set_concept
from queries.resolve import concept_circuits, resolve_model
from queries.suggest import ablate_model_flags

__all__ = [
    "AGAINST_METRICS",
    "KEEP_BUDGET",
    "KEEP_METRICS",
    "Candidate",
    "Effect",
    "PrunePlan",
    "image_set_concept",
    "plan_pruning",
]

AGAINST_METRICS: tuple[Metric, ...] = (Metric.attack_success, Metric.accuracy, Metric.true_prob, Metric.agreement)
"""Metrics of the behaviour to suppress, in order of preference (an attack's success first)."""
KEEP_METRICS: tuple[Metric, ...] = (Metric.accuracy, Metric.true_prob, Metric.agreement)
"""Metrics of the behaviours to keep, in order of preference."""
KEEP_BUDGET = 0.02
"""Default damage a kept concept may take beyond its random baseline (two accuracy points)."""


@dataclass(frozen=True)
class Effect:
    """A pruned circuit's effect on one image set.

    Attributes:
        concept: the concept the image set stands for.
        image_set: the evaluated image set's name.
        metric: e.g. "accuracy" or "attack_success".
        before: the clean model's value (None when not stored).
        after: the pruned model's value.
        baseline: the value with a random circuit of the same shape pruned (None if not stored).
    """

    concept: str
    image_set: str
    metric: str
    before: float | None
    after: float
    baseline: float | None

    @property
    def drop(self) -> float:
        """before − after (0 when the clean value is unknown)."""
        return 0.0 if self.before is None else self.before - self.after

    @property
    def damage(self) -> float:
        """How far below the random baseline the pruned value falls (below the clean value when no
        baseline is stored; never negative)."""
        ref = self.baseline if self.baseline is not None else self.before
        return 0.0 if ref is None else max(0.0, ref - self.after)


@dataclass(frozen=True)
class Candidate:
    """One circuit to prune, with its rank score and what it rests on.

    Attributes:
        circuit_id, concept, run_id: the circuit.
        kind: intervention kind the evidence comes from ("circuit" or "edge"); for proxies the
            kind the suggested commands use.
        basis: "evidence" (against and every keep concept evaluated), "partial" (some keep
            concept not evaluated), "over-budget" (some keep concept damaged beyond the keep
            budget: never a recommendation) or "proxy" (no evaluation on the against images).
        score: evidence: drop(against) − mean drop(keep); proxy: Jaccard difference; None when
            a proxy cannot be computed (the against concept has no circuit).
        edge_fraction: fraction of the model's edges the intervention cuts (evidence only).
        against: the effect on the against images (evidence only).
        keep: the effects on the keep concepts' images that are stored.
        overlap_against: Jaccard with the against concept's circuit (None without one).
        overlap_keep: mean Jaccard with the keep concepts' circuits (None without keep).
        missing: concepts whose images this candidate has not been evaluated on.
        commands: `circuits ablate` commands that would add the missing evaluations.
        keep_damage: the largest `Effect.damage` over the stored keep effects (None without any).
    """

    circuit_id: int
    concept: str
    run_id: int
    kind: str
    basis: str
    score: float | None
    edge_fraction: float | None
    against: Effect | None
    keep: tuple[Effect, ...]
    overlap_against: float | None
    overlap_keep: float | None
    missing: tuple[str, ...]
    commands: tuple[str, ...]
    keep_damage: float | None = None


@dataclass(frozen=True)
class PrunePlan:
    """The answer of `plan_pruning`: candidates best first (evidence, partial evidence, proxies)."""

    model: str
    against: str
    keep: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    notes: tuple[str, ...] = ()
    keep_budget: float | None = KEEP_BUDGET
    verdict: str | None = None  # one line when no evaluated plan meets the keep budget

    @property
    def recommended(self) -> tuple[Candidate, ...]:
        """Candidates with complete evidence that keep every kept concept within the budget."""
        return tuple(c for c in self.candidates if c.basis == "evidence")

    def rows(self) -> list[dict[str, object]]:
        """One flat dict per candidate, for tables, CSV and JSON."""
        out = []
        rank = 0
        for c in self.candidates:
            rank += c.basis != "over-budget"
            row: dict[str, object] = {
                "rank": rank if c.basis != "over-budget" else None,  # never ranked as a recommendation
                "circuit": c.circuit_id,
                "concept": c.concept,
                "kind": c.kind,
                "basis": c.basis,
                "score": None if c.score is None else round(c.score, 4),
                "edges_cut": None if c.edge_fraction is None else round(c.edge_fraction, 6),
                "against": _effect_text(c.against),
                "keep": "; ".join(_effect_line(e) for e in c.keep) or None,
                "keep_damage": _round(c.keep_damage),
                "overlap_against": _round(c.overlap_against),
                "overlap_keep": _round(c.overlap_keep),
                "missing": ", ".join(c.missing) or None,
            }
            out.append(row)
        return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _effect_text(e: Effect | None) -> str | None:
    return None if e is None else _effect_line(e)


def _effect_line(e: Effect) -> str:
    before = "?" if e.before is None else f"{e.before:.3f}"
    base = "" if e.baseline is None else f" (random {e.baseline:.3f})"
    return f"{e.concept} {e.metric} {before}→{e.after:.3f}{base}"


def plan_pruning(
    session: Session,
    model: str,
    against: str,
    keep: Sequence[str] = (),
    *,
    kind: str = InterventionKind.circuit,
    keep_budget: float | None = KEEP_BUDGET,
) -> PrunePlan:
    """Rank a model's stored circuits as pruning candidates against one behaviour.

    Args:
        session: the caller's session.
        model: model name (``NAME@SHA256PREFIX`` when several weights share it).
        against: the concept (or evaluated image set name) whose behaviour pruning should hurt.
        keep: concepts whose behaviour pruning should spare.
        kind: intervention kind that the suggested `circuits ablate` commands use.
        keep_budget: the damage (metric units below the random baseline) each keep concept may
            take; candidates over it are labelled "over-budget" and ranked last. None: no budget.

    Returns:
        The plan: candidates with complete evidence by score (best first), then those with
        partial evidence, then proxy candidates, then over-budget ones (least damage first).

    Raises:
        NotFound: unknown model, or `against` / a `keep` name is neither a concept nor the name
            of an evaluated image set.
        CircuitsError: `against` is also in `keep`, the model has no circuits, or a negative budget.
    """
    keep = tuple(dict.fromkeys(k for k in keep if k))
    if keep_budget is not None and not keep_budget >= 0:
        raise CircuitsError(f"the keep budget must be 0 or more (got {keep_budget})")
    if against in keep:
        raise CircuitsError(f"{against} is both `against=` and `keep=`: a circuit cannot hurt and spare it")
    chosen_model = resolve_model(session, model)
    per_concept = {c.concept: c for c in concept_circuits(session, chosen_model)}
    if not per_concept:
        raise CircuitsError(f"model {model} has no circuits yet: ingest some with `circuits ingest {model} …`")
    notes: list[str] = []
    evals, circuit_info = evaluations(session, chosen_model)
    sets = concept_image_sets(session, [against, *keep])
    known = set(query_arrow(session, "SELECT name FROM concept").column("name").to_pylist())
    known |= {image_set_concept(e.image_set) for e in evals} | {e.image_set for e in evals}
    unknown = [name for name in (against, *keep) if name not in known]
    if unknown:
        raise NotFound(
            f"{', '.join(unknown)} is neither a concept in the catalog nor an evaluated image set of "
            f"{chosen_model.name}: `circuits list concepts` lists the concepts"
        )

    def concept_of(row: EvalRow) -> str | None:
        for name in (against, *keep):
            if (
                row.sha in sets.get(name, {}).get("shas", ())
                or image_set_concept(row.image_set) == name
                or row.image_set == name
            ):
                return name
        return None

    evaluated = {concept_of(row) for row in evals}
    blind = [k for k in keep if k not in per_concept and k not in evaluated]
    if blind:  # neither a circuit nor an evaluation: nothing could say whether a plan spares it
        raise NotFound(
            f"`keep=` {', '.join(blind)}: no stored circuit of {chosen_model.name} for that concept and no evaluation "
            f"on its images; ingest one first (`circuits ingest {chosen_model.name} --concept {blind[0]} …`)"
        )

    # Newest row per (group, concept, metric): rows come oldest first.
    by_group: dict[tuple[int, str, int | None], dict[tuple[str, str], EvalRow]] = {}
    fractions: dict[tuple[int, str, int | None], float] = {}
    for row in evals:
        name = concept_of(row)
        fractions[row.group] = row.edge_fraction
        if name is not None:
            by_group.setdefault(row.group, {})[(name, row.metric)] = row
    for g in fractions:
        by_group.setdefault(g, {})

    # Candidate circuits: each concept's circuit, plus every circuit with interventions.
    candidates_ids = {c.circuit_id for c in per_concept.values()} | {g[0] for g in by_group}
    candidates_ids -= {per_concept[k].circuit_id for k in keep if k in per_concept}
    candidates_ids = {c for c in candidates_ids if circuit_info[c][0] not in keep}
    overlaps = _proxy_overlaps(session, sorted(candidates_ids), per_concept, against, keep, notes)

    flag_cache: dict[int, str] = {}

    def flags(run_id: int) -> str:  # --model/--weights the suggested ablate commands need
        if run_id not in flag_cache:
            flag_cache[run_id] = ablate_model_flags(session, run_id)
        return flag_cache[run_id]

    out: list[Candidate] = []
    with_evidence: set[int] = set()
    for group, rows in by_group.items():
        cid, group_kind, _ = group
        if cid not in candidates_ids:
            continue
        against_effect = _effect(rows, against, AGAINST_METRICS)
        if against_effect is None:
            continue
        keep_effects = tuple(e for e in (_effect(rows, k, KEEP_METRICS) for k in keep) if e is not None)
        missing = tuple(k for k in keep if all(e.concept != k for e in keep_effects))
        score: float | None = against_effect.drop - (
            float(np.mean([e.drop for e in keep_effects])) if keep_effects else 0.0
        )
        concept, run_id = circuit_info[cid]
        with_evidence.add(cid)
        damage = max((e.damage for e in keep_effects), default=None)
        over = keep_budget is not None and damage is not None and damage > keep_budget + 1e-9
        basis = "over-budget" if over else "partial" if missing else "evidence"
        out.append(
            Candidate(
                cid,
                concept,
                run_id,
                group_kind,
                basis,
                score,
                fractions[group],
                against_effect,
                keep_effects,
                *overlaps.get(cid, (None, None)),
                missing,
                tuple(ablate_command(cid, group_kind, m, sets.get(m, {}), evals, flags(run_id)) for m in missing),
                damage,
            )
        )
    # Complete evidence first: a partial score leaves out the keep behaviours it may hurt.
    over_budget = sorted(
        (c for c in out if c.basis == "over-budget"), key=lambda c: (c.keep_damage, -(c.score or 0.0), c.circuit_id)
    )
    out = [c for c in out if c.basis != "over-budget"]
    out.sort(key=lambda c: (c.basis != "evidence", -(c.score or 0.0), c.edge_fraction or 0.0, c.circuit_id))

    proxies = []
    for cid in sorted(candidates_ids - with_evidence):
        concept, run_id = circuit_info[cid]
        o_against, o_keep = overlaps.get(cid, (None, None))
        score = None if o_against is None else o_against - (o_keep or 0.0)
        # Evidence on the keep sets alone (no against evaluation yet) is still shown.
        merged: dict[tuple[str, str], EvalRow] = {}
        for g, rows in by_group.items():
            if g[0] == cid:
                merged.update(rows)
        keep_effects = tuple(e for e in (_effect(merged, k, KEEP_METRICS) for k in keep) if e is not None)
        missing = (against, *(k for k in keep if all(e.concept != k for e in keep_effects)))
        proxies.append(
            Candidate(
                cid,
                concept,
                run_id,
                kind,
                "proxy",
                score,
                None,
                None,
                keep_effects,
                o_against,
                o_keep,
                missing,
                tuple(ablate_command(cid, kind, m, sets.get(m, {}), evals, flags(run_id)) for m in missing),
                max((e.damage for e in keep_effects), default=None),
            )
        )
    proxies.sort(key=lambda c: (c.score is None, -(c.score or 0.0), c.circuit_id))
    if proxies and not out:
        notes.append(
            f"no circuit of {chosen_model.name} has been evaluated on {against} images yet: every candidate "
            "is ranked by the structural proxy (overlap with the against circuit minus overlap with the keep circuits)"
        )
    verdict = None
    if over_budget and not any(c.basis == "evidence" for c in out):
        closest = ", ".join(f"circuit {c.circuit_id} ({c.concept}) {c.keep_damage:.3f}" for c in over_budget[:3])
        verdict = (
            f"no stored circuit suppresses {against} while keeping {', '.join(keep)} within the keep budget "
            f"({keep_budget:.3f} below the random baseline); closest, by damage: {closest}"
        )
    candidates = tuple(out + proxies + over_budget)
    return PrunePlan(chosen_model.name, against, keep, candidates, tuple(notes), keep_budget, verdict)


def _effect(rows: dict[tuple[str, str], EvalRow], concept: str, metrics: Sequence[str]) -> Effect | None:
    for metric in metrics:
        row = rows.get((concept, metric))
        if row is not None:
            return Effect(concept, row.image_set, metric, row.clean, row.value, row.baseline)
    return None


def _proxy_overlaps(
    session: Session,
    candidate_ids: Sequence[int],
    per_concept: dict,
    against: str,
    keep: Sequence[str],
    notes: list[str],
) -> dict[int, tuple[float | None, float | None]]:
    """circuit id → (Jaccard with the against circuit, mean Jaccard with the keep circuits)."""
    against_id = per_concept[against].circuit_id if against in per_concept else None
    keep_ids = [per_concept[k].circuit_id for k in keep if k in per_concept]
    absent = [k for k in keep if k not in per_concept]
    if against_id is None:
        notes.append(
            f"{against} has no circuit on this model, so candidates without evidence cannot be ranked by "
            f"structure: ingest one with `circuits ingest MODEL --concept {against} …`"
        )
    if absent:
        notes.append(f"no circuit for keep concept(s) {', '.join(absent)}: the proxy ignores them")
    ids = list(dict.fromkeys([*candidate_ids, *([against_id] if against_id is not None else []), *keep_ids]))
    if not ids:
        return {}
    jac = overlap_of_circuits(session, ids, "jaccard")
    at = {c: i for i, c in enumerate(ids)}
    out = {}
    for cid in candidate_ids:
        o_against = None if against_id is None else float(jac[at[cid], at[against_id]])
        o_keep = float(np.mean([jac[at[cid], at[k]] for k in keep_ids])) if keep_ids else None
        out[cid] = (o_against, o_keep)
    return out
