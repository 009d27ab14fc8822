"""Measuring one pruned text circuit: attack success beside several random circuits, clean
accuracy, and the same on held-out images (used by `ingest.defence.defend`).

Every number goes through `ingest.ablation.ablate`, so every evaluation is stored (one intervention
per random-circuit seed) and a repeated request reuses what is stored. A single random circuit is a
noisy baseline (on typo-mini, attack success with five random circuits of one shape pruned has a
standard deviation of 3–5 points), so the random baseline is the mean over `n_baselines` seeded
circuits of the same shape, with their standard deviation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from catalog.engine import Catalog
from ingest.images import ImageSet

__all__ = ["AttackMeasure", "HoldoutRow", "measure_attack", "measure_clean", "measure_holdout"]


@dataclass(frozen=True)
class AttackMeasure:
    """Attack metrics of one pruned circuit on one attack set (shares, 0–1).

    Attributes:
        random: attack success with each random circuit pruned instead (one per baseline seed).
        intervention_ids: the stored interventions, first the one with the first baseline seed.
    """

    attack_success_clean: float
    attack_success: float
    attack_accuracy: float | None
    random: tuple[float, ...]
    edge_fraction: float
    baseline_edge_fraction: float
    intervention_ids: tuple[int, ...]

    @property
    def random_mean(self) -> float:
        return float(np.mean(self.random))

    @property
    def random_sd(self) -> float:
        return float(np.std(self.random))


@dataclass(frozen=True)
class HoldoutRow:
    """The recommended circuit on the attack and clean images of one held-out seed."""

    seed: int
    n_attack: int
    attack_success_clean: float
    attack_success: float
    attack_success_random: float  # mean over the random circuits
    attack_success_random_sd: float
    clean_accuracy_clean: float
    clean_accuracy: float

    @property
    def cut(self) -> float:
        """How many times lower attack success is with the circuit pruned (inf at 0)."""
        return float("inf") if self.attack_success <= 0 else self.attack_success_clean / self.attack_success

    @property
    def random_share(self) -> float:
        """The random circuits' cut (points) as a share of the text circuit's cut."""
        text = self.attack_success_clean - self.attack_success
        return float("nan") if text <= 0 else (self.attack_success_clean - self.attack_success_random) / text

    def as_dict(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "n_attack": self.n_attack,
            "attack_success_clean": round(self.attack_success_clean, 4),
            "attack_success": round(self.attack_success, 4),
            "cut": None if not np.isfinite(self.cut) else round(self.cut, 2),
            "attack_success_random": round(self.attack_success_random, 4),
            "attack_success_random_sd": round(self.attack_success_random_sd, 4),
            "random_share": None if not np.isfinite(self.random_share) else round(self.random_share, 3),
            "clean_accuracy_clean": round(self.clean_accuracy_clean, 4),
            "clean_accuracy": round(self.clean_accuracy, 4),
        }


def measure_attack(
    cat: Catalog,
    circuit_id: int,
    attack_set: ImageSet,
    *,
    baseline_seeds: Sequence[int],
    step: Callable[[], None] | None = None,
    **common,
) -> AttackMeasure:
    """Prune the circuit on the attack images beside one random circuit per seed (all stored).

    Args:
        step: called after each evaluation (one per baseline seed), for progress reports.
        common: `ingest.ablation.ablate` keyword arguments (kind, pair, weights, device, …), no
            `baseline_seed`.
    """
    from ingest.ablation import ablate

    results = []
    for s in baseline_seeds:
        results.append(ablate(cat, circuit_id, attack_set, baseline_seed=s, **common))
        if step is not None:
            step()
    first = results[0]
    return AttackMeasure(
        attack_success_clean=first.clean["attack_success"],
        attack_success=first.intervened["attack_success"],
        attack_accuracy=first.intervened.get("attack_accuracy"),
        random=tuple(r.baseline["attack_success"] for r in results),
        edge_fraction=first.edge_fraction,
        baseline_edge_fraction=first.baseline_edge_fraction,
        intervention_ids=tuple(r.intervention_id for r in results),
    )


def measure_clean(
    cat: Catalog,
    circuit_id: int,
    clean_sets: Mapping[str, ImageSet] | Sequence[ImageSet],
    *,
    step: Callable[[], None] | None = None,
    **common,
) -> tuple[dict[str, float], tuple[int, ...]]:
    """Image-weighted mean clean accuracy over the sets: {"clean", "intervened", "baseline"} and the
    intervention ids (one per set); `step` is called after each set's evaluation."""
    from ingest.ablation import ablate

    sets = list(clean_sets.values()) if isinstance(clean_sets, Mapping) else list(clean_sets)
    results = []
    for image_set in sets:
        results.append(ablate(cat, circuit_id, image_set, **common))
        if step is not None:
            step()
    n = np.array([r.n_images for r in results], dtype=float)
    means = {
        which: float(np.dot(n, [getattr(r, which)["accuracy"] for r in results]) / n.sum())
        for which in ("clean", "intervened", "baseline")
    }
    return means, tuple(r.intervention_id for r in results)


def measure_holdout(
    cat: Catalog,
    circuit_id: int,
    holdout: Sequence[tuple[int, ImageSet, Sequence[ImageSet]]],
    *,
    baseline_seeds: Sequence[int],
    **common,
) -> list[HoldoutRow]:
    """The pruned circuit on each held-out seed's attack and clean images.

    Args:
        holdout: (seed, attack set, clean sets) per held-out seed.
        common: `ablate` keyword arguments (kind, pair, weights, device, …) but `baseline_seed`.
    """
    rows = []
    for seed, attack_set, clean_sets in holdout:
        att = measure_attack(cat, circuit_id, attack_set, baseline_seeds=baseline_seeds, **common)
        clean, _ = measure_clean(cat, circuit_id, clean_sets, baseline_seed=baseline_seeds[0], **common)
        rows.append(
            HoldoutRow(
                seed,
                len(attack_set),
                att.attack_success_clean,
                att.attack_success,
                att.random_mean,
                att.random_sd,
                clean["clean"],
                clean["intervened"],
            )
        )
    return rows
