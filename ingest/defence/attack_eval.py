"""Typographic-attack metrics of a pruned model (docs/method.md, "Interventions"): attack success and accuracy under attack.

`evaluate_attack` runs the clean model, the model with a circuit pruned (circuit or edge pruning,
through `ingest.edit.interventions`) and the model with a seeded random circuit of the same shape
pruned the same way, on attack images, and reports for each:

- `attack_success`: the share of images classified as the class written on them;
- `attack_accuracy`: the share still classified as their true class (when it is known);
- `kl`: mean KL(clean ‖ pruned) of the softmax outputs, in nats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ingest.cla.capture import layer_widths
from ingest.edit.interventions import InterventionError, edge_fraction, intervention, random_circuit
from ingest.hooks import resolve_device

__all__ = ["AttackEvaluation", "attack_metrics", "evaluate_attack", "predict"]


@dataclass(frozen=True)
class AttackEvaluation:
    """Attack metrics of the clean, pruned and random-baseline models on one attack set."""

    clean: dict[str, float]
    intervened: dict[str, float]
    baseline: dict[str, float]
    edge_fraction: float
    baseline_edge_fraction: float
    baseline_channels: list[list[int]]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 64, device: str = "auto") -> torch.Tensor:
    """Logits (N, classes) of `model` on preprocessed images `x` (N, 3, H, W), float64 on CPU."""
    dev = resolve_device(device)
    model.to(dev).eval()
    outs = []
    for s in range(0, len(x), batch_size):
        out = model(x[s : s + batch_size].to(dev))
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise InterventionError("the model does not return class logits (N, classes): attacks need a classifier")
        outs.append(out.double().cpu())
    return torch.cat(outs)


def attack_metrics(
    logits: torch.Tensor, clean_logits: torch.Tensor, written: np.ndarray, labels: np.ndarray | None
) -> dict[str, float]:
    """`attack_success`, `attack_accuracy` (when `labels` is given) and `kl` from logits (N, K)."""
    pred = logits.argmax(1).numpy()
    log_p, log_c = torch.log_softmax(logits, 1), torch.log_softmax(clean_logits, 1)
    out = {"attack_success": float((pred == written).mean())}
    if labels is not None:
        out["attack_accuracy"] = float((pred == labels).mean())
    out["kl"] = max(float((log_c.exp() * (log_c - log_p)).sum(1).mean()), 0.0)
    return out


def evaluate_attack(
    model: nn.Module,
    channels: Sequence[Sequence[int]],
    x: torch.Tensor,
    written: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray | None,
    *,
    layers: Sequence[str],
    kind: str = "circuit",
    pair: int = 0,
    baseline_seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
) -> AttackEvaluation:
    """Attack metrics with a circuit pruned, beside a random circuit of the same shape.

    Args:
        model: a classifier returning logits (N, classes).
        channels: the circuit, one channel list per layer.
        x: preprocessed attack images (N, 3, H, W).
        written: per image, the class written on it (N,).
        labels: per image, its true class, or None.
        layers: the circuit's layers (dotted module paths), forward order.
        kind, pair: circuit or edge pruning (of layer pair `pair`).
        baseline_seed: seed of the random circuit.

    Raises:
        InterventionError: lengths that do not match, classes outside the logits, a bad kind/pair.
    """
    written = np.asarray(written, dtype=np.int64)
    labels = None if labels is None else np.asarray(labels, dtype=np.int64)
    if len(written) != len(x) or (labels is not None and len(labels) != len(x)):
        raise InterventionError(f"{len(x)} images but {len(written)} written classes: give one per image")
    channels = [[int(c) for c in ch] for ch in channels]
    widths = layer_widths(model, layers, tuple(x.shape[1:]))
    baseline_channels = random_circuit(widths, [len(set(c)) for c in channels], baseline_seed)
    clean = predict(model, x, batch_size=batch_size, device=device)
    if written.max(initial=0) >= clean.shape[1] or (labels is not None and labels.max(initial=0) >= clean.shape[1]):
        raise InterventionError(f"written or true classes beyond the model's {clean.shape[1]} outputs")

    def pruned(chans: Sequence[Sequence[int]]) -> torch.Tensor:
        with intervention(model, layers, chans, kind, pair):
            return predict(model, x, batch_size=batch_size, device=device)

    return AttackEvaluation(
        clean=attack_metrics(clean, clean, written, labels),
        intervened=attack_metrics(pruned(channels), clean, written, labels),
        baseline=attack_metrics(pruned(baseline_channels), clean, written, labels),
        edge_fraction=edge_fraction(widths, channels, kind, pair),
        baseline_edge_fraction=edge_fraction(widths, baseline_channels, kind, pair),
        baseline_channels=baseline_channels,
    )
