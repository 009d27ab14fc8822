"""What a defence run measured: one row per pruned text circuit, the report and the
recommendation rule (see `ingest.defence.defend`). Plain data, no torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DefenceReport", "DefenceRow", "recommend"]


@dataclass(frozen=True)
class DefenceRow:
    """One pruned text circuit, measured, beside random circuits of the same shape (values are
    shares, 0–1; `attack_success_random` is their mean, `attack_success_random_sd` its spread)."""

    circuit_id: int
    k: tuple[int, ...]
    kind: str
    pair: int | None  # edge pruning: the cut circuit layer pair; None for circuit pruning
    edge_fraction: float
    baseline_edge_fraction: float
    attack_success_clean: float
    attack_success: float
    attack_success_random: float
    clean_accuracy_clean: float
    clean_accuracy: float
    clean_accuracy_random: float
    attack_accuracy: float | None = None
    intervention_ids: tuple[int, ...] = ()
    attack_success_random_sd: float = 0.0  # spread of attack_success_random (its mean) over the random circuits

    @property
    def cut(self) -> float:
        """How many times lower attack success is with the circuit pruned (inf when it reaches 0)."""
        return _ratio(self.attack_success_clean, self.attack_success)

    @property
    def clean_loss(self) -> float:
        """Clean accuracy lost by pruning (positive = worse)."""
        return self.clean_accuracy_clean - self.clean_accuracy

    def as_dict(self) -> dict[str, object]:
        """A flat row for tables, CSV and JSON."""
        return {
            "circuit": self.circuit_id,
            "k": ",".join(map(str, self.k)) if len(set(self.k)) > 1 else str(self.k[0]),
            "kind": self.kind,
            "pair": self.pair,
            "edges_cut": round(self.edge_fraction, 5),
            "attack_success": round(self.attack_success, 4),
            "attack_success_random": round(self.attack_success_random, 4),
            "attack_success_random_sd": round(self.attack_success_random_sd, 4),
            "attack_success_clean": round(self.attack_success_clean, 4),
            "cut": None if not np.isfinite(self.cut) else round(self.cut, 2),
            "clean_accuracy": round(self.clean_accuracy, 4),
            "clean_accuracy_random": round(self.clean_accuracy_random, 4),
            "clean_accuracy_clean": round(self.clean_accuracy_clean, 4),
            "attack_accuracy": None if self.attack_accuracy is None else round(self.attack_accuracy, 4),
        }


@dataclass(frozen=True)
class DefenceReport:
    """What `defend` measured and what it recommends."""

    model: str
    run_id: int
    rows: tuple[DefenceRow, ...]
    recommended: DefenceRow | None
    meets_target: bool
    budget: float
    target_cut: float
    reason: str
    search: tuple = ()  # the per-layer k search's accepted steps (`ingest.defence.search.SearchStep`)
    holdout: tuple = ()  # the recommended circuit per held-out seed (`ingest.defence.measure.HoldoutRow`)

    @property
    def holdout_cut(self) -> float | None:
        """Mean attack success over the held-out seeds, unpruned over pruned (None without them)."""
        if not self.holdout:
            return None
        after = float(np.mean([h.attack_success for h in self.holdout]))
        return _ratio(float(np.mean([h.attack_success_clean for h in self.holdout])), after)


def _ratio(before: float, after: float) -> float:
    return float("inf") if after <= 0 else before / after


def recommend(rows: Sequence[DefenceRow], budget: float, target_cut: float) -> tuple[DefenceRow | None, bool, str]:
    """The smallest defence within the clean-accuracy budget (see the module docstring).

    Returns:
        (row or None, whether it meets `target_cut`, a one-line reason).
    """
    within = [r for r in rows if r.clean_loss <= budget + 1e-12]
    if not within:
        return None, False, f"no pruned circuit keeps clean accuracy within {100 * budget:.1f} points"
    meeting = [r for r in within if r.cut >= target_cut]
    if meeting:
        best = min(meeting, key=lambda r: (r.edge_fraction, r.attack_success, r.circuit_id))
        return (
            best,
            True,
            (
                f"fewest edges cut ({100 * best.edge_fraction:.2f}%) among the circuits that cut attack "
                f"success ≥ {target_cut:g}× within {100 * budget:.1f} points of clean accuracy"
            ),
        )
    best = min(within, key=lambda r: (r.attack_success, r.edge_fraction, r.circuit_id))
    return (
        best,
        False,
        (
            f"no circuit cuts attack success {target_cut:g}× within {100 * budget:.1f} points of clean "
            f"accuracy; the lowest attack success within the budget is {best.cut:.2f}×"
        ),
    )
