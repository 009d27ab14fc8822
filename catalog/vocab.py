"""The domain vocabulary: every kind, status and metric name the project stores or accepts.

A leaf module (standard library only). CHECK constraints (`catalog.models`), Typer choices
(`circuits.cli.options`), mask files (`catalog.mask_file`) and the model-side code derive from
these enums instead of repeating strings; a `StrEnum` member compares equal to its value, so
rows read back as plain strings still match.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["InterventionKind", "MaskKind", "Metric", "RunStatus", "check_in"]


class RunStatus(StrEnum):
    """Where a CLA run stands; only `complete` runs are visible in the views."""

    running = "running"
    complete = "complete"
    failed = "failed"


class InterventionKind(StrEnum):
    """How a circuit is pruned (circuit pruning zeroes every circuit neuron; edge pruning cuts the
    paths between one pair of circuit layers)."""

    circuit = "circuit"
    edge = "edge"


MaskKind = InterventionKind
"""A mask file prunes the same way an intervention does: the two vocabularies are one."""


class Metric(StrEnum):
    """Evaluation metrics stored in `evaluation.metric`.

    Labelled image sets give `accuracy`, `true_prob` and `kl`; unlabelled ones are measured against
    the clean model's own top-1 (`agreement`, `clean_top1_prob`, `kl`). Typographic attacks add
    `attack_success` (share classified as the written class) and `attack_accuracy` (true class
    under attack).
    """

    accuracy = "accuracy"
    true_prob = "true_prob"
    kl = "kl"
    agreement = "agreement"
    clean_top1_prob = "clean_top1_prob"
    attack_success = "attack_success"
    attack_accuracy = "attack_accuracy"


def check_in(column: str, enum: type[StrEnum]) -> str:
    """The SQL of a CHECK constraint that `column` holds one of `enum`'s values."""
    values = ", ".join(f"'{member.value}'" for member in enum)
    return f"{column} IN ({values})"
