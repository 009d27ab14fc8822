"""Evaluating an intervention on a circuit against a random baseline (docs/method.md, "Interventions").

The interventions themselves (circuit pruning, edge pruning) are scoped hooks in
`ingest.edit.prune`, re-exported here. `evaluate` runs the clean model, the pruned model and the
model with a random circuit of the same shape pruned the same way (seeded), and reports
accuracy, true-class probability and KL from the clean outputs, plus the share of edges cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from catalog.vocab import InterventionKind, Metric
from ingest.cla.capture import resolve_layers
from ingest.cla.search import Circuit
from ingest.edit.prune import (
    InterventionError,
    _as_tensor_output,
    check_circuit,
    check_kind,
    intervention,
    prune_circuit,
    prune_edges,
)
from ingest.hooks import channel_dim, evaluating_on, resolve_device, scoped_hooks

__all__ = [
    "EvaluationResult",
    "InterventionError",
    "Metrics",
    "check_kind",
    "edge_fraction",
    "evaluate",
    "intervention",
    "prune_circuit",
    "prune_edges",
    "random_circuit",
]
# InterventionError, check_kind, intervention, prune_circuit and prune_edges are defined in
# ingest.edit.prune and re-exported here.


@dataclass(frozen=True)
class Metrics:
    """Output metrics over an image set.

    Attributes:
        accuracy: top-1 accuracy against the true labels.
        true_prob: mean softmax probability of the true class.
        kl: mean KL(clean ‖ this) of the softmax outputs, in nats (0 for the clean model).
    """

    accuracy: float
    true_prob: float
    kl: float

    def named(self, *, labelled: bool = True) -> dict[Metric, float]:
        """The metrics under their stored names (`catalog.vocab.Metric`).

        Args:
            labelled: False when the "labels" were the clean model's own top-1 (an unlabelled
                image set): accuracy is then stored as `agreement` and true_prob as `clean_top1_prob`.
        """
        if labelled:
            return {Metric.accuracy: self.accuracy, Metric.true_prob: self.true_prob, Metric.kl: self.kl}
        return {Metric.agreement: self.accuracy, Metric.clean_top1_prob: self.true_prob, Metric.kl: self.kl}


@dataclass(frozen=True)
class EvaluationResult:
    """An intervention and its random baseline, evaluated on one image set.

    Attributes:
        kind: how the circuit was pruned.
        pair: for edge pruning, the index i of the cut L_i → L_{i+1} (0 for circuit pruning).
        clean: the unmodified model.
        intervened: the model with the circuit pruned.
        baseline: the model with a random circuit of the same shape pruned the same way.
        edge_fraction: fraction of adjacent-layer neuron pairs the intervention cuts.
        baseline_edge_fraction: the same for the baseline circuit.
        n_images: images evaluated.
        baseline_channels: the random circuit that was pruned for the baseline.
    """

    kind: InterventionKind
    pair: int
    clean: Metrics
    intervened: Metrics
    baseline: Metrics
    edge_fraction: float
    baseline_edge_fraction: float
    n_images: int
    baseline_channels: list[list[int]]


def random_circuit(widths: Sequence[int], k_per_layer: int | Sequence[int], seed: int) -> list[list[int]]:
    """A random circuit: k_i distinct channels per layer, ascending, reproducible from `seed`.

    Args:
        widths: channels per layer.
        k_per_layer: one k for every layer, or one per layer.
        seed: NumPy generator seed.

    Returns:
        One ascending channel list per layer.

    Raises:
        InterventionError: k out of 0…width, or a k list of the wrong length.
    """
    ks = (
        [int(k_per_layer)] * len(widths)
        if isinstance(k_per_layer, (int, np.integer))
        else [int(k) for k in k_per_layer]
    )
    if len(ks) != len(widths):
        raise InterventionError(f"{len(ks)} k values for {len(widths)} layers")
    rng = np.random.default_rng(seed)
    out = []
    for i, (w, k) in enumerate(zip(widths, ks)):
        if not 0 <= k <= w:
            raise InterventionError(f"cannot draw {k} channels from layer {i}, which has {w}")
        out.append(sorted(int(c) for c in rng.choice(int(w), size=k, replace=False)))
    return out


def edge_fraction(
    widths: Sequence[int], channels: Sequence[Sequence[int]], kind: InterventionKind | str, pair: int = 0
) -> float:
    """Fraction of adjacent-layer neuron pairs (over the circuit's layers) an intervention cuts.

    Circuit pruning cuts every pair that touches a circuit neuron; edge pruning cuts the
    k_i·k_{i+1} pairs between the circuit's neurons of L_pair and L_pair+1. The denominator is
    `Σ_i C_i·C_{i+1}`.

    Raises:
        InterventionError: an unknown kind, mismatched lengths or a pair out of range.
    """
    if len(widths) != len(channels):
        raise InterventionError(f"{len(widths)} widths but {len(channels)} channel lists")
    if len(widths) < 2:
        raise InterventionError("edge fractions need at least two layers")
    ks = [len(set(c)) for c in channels]
    total = sum(int(a) * int(b) for a, b in zip(widths[:-1], widths[1:]))
    kind = check_kind(kind)
    if kind is InterventionKind.circuit:
        cut = sum(
            int(widths[i]) * int(widths[i + 1]) - (int(widths[i]) - ks[i]) * (int(widths[i + 1]) - ks[i + 1])
            for i in range(len(widths) - 1)
        )
    else:
        if not 0 <= pair < len(widths) - 1:
            raise InterventionError(f"edge pair {pair} is out of range for {len(widths)} layers")
        cut = ks[pair] * ks[pair + 1]
    return cut / total


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        desc = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InterventionError(f"the model returned {desc}: evaluation needs class logits (N, classes)")
    return out.detach().to(torch.float64)  # float64: exact-enough KL of near-identical outputs


def _metrics(log_p: torch.Tensor, log_clean: torch.Tensor, labels: torch.Tensor) -> Metrics:
    """Metrics from log-probabilities (N, K) against the clean log-probabilities and labels (N,)."""
    accuracy = (log_p.argmax(dim=1) == labels).double().mean().item()
    true_prob = log_p.gather(1, labels[:, None]).exp().mean().item()
    kl = (log_clean.exp() * (log_clean - log_p)).sum(dim=1).mean().item()  # KL(clean ‖ p) per image
    return Metrics(accuracy=float(accuracy), true_prob=float(true_prob), kl=max(float(kl), 0.0))


def evaluate(
    model: nn.Module,
    channels_or_circuit: Circuit | Sequence[Sequence[int]],
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int] | np.ndarray,
    *,
    layers: Sequence[str],
    kind: InterventionKind | str = InterventionKind.circuit,
    pair: int = 0,
    baseline_seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "auto",
) -> EvaluationResult:
    """Evaluate an intervention on a circuit and on a random circuit of the same shape.

    Args:
        model: a classifier returning logits `(N, classes)`; it runs in eval mode on `device`, and
            afterwards every parameter, buffer and sub-module mode is back as it was.
        channels_or_circuit: a `Circuit` or one channel list per layer.
        images: preprocessed images `(N, 3, H, W)`.
        labels: true class per image `(N,)`.
        layers: the circuit's layers (dotted module paths), in forward order.
        kind: `circuit` (prune every circuit neuron) or `edge` (cut L_pair → L_pair+1).
        pair: for edge pruning, the index of the cut's upstream layer.
        baseline_seed: seed of the random baseline circuit.
        batch_size: images per forward pass.
        device: "auto" (CUDA if available), "cpu", "cuda", …

    Returns:
        Clean, intervened and baseline metrics, the edge fractions and the baseline circuit.

    Raises:
        UnknownLayer: a layer is not a module of `model` (from `ingest.cla.capture`).
        InterventionError: an unknown kind, channels outside a layer, labels that do not match the
            images, or a model that does not return logits.
    """
    channels = channels_or_circuit.channels if isinstance(channels_or_circuit, Circuit) else channels_or_circuit
    channels = check_circuit(layers, channels)
    kind = check_kind(kind)
    if kind is InterventionKind.edge and not 0 <= pair < len(layers) - 1:
        raise InterventionError(f"edge pair {pair} is out of range for {len(layers)} layers: use 0…{len(layers) - 2}")
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise InterventionError("images must be a preprocessed float tensor (N, 3, H, W): see ingest.zoo.preprocess")
    labels_t = (
        torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long().reshape(-1)
    )
    n = images.shape[0]
    if labels_t.shape[0] != n or n == 0:
        raise InterventionError(f"{n} images but {labels_t.shape[0]} labels: give one label per image")
    if batch_size < 1:
        raise InterventionError(f"batch_size must be ≥ 1, got {batch_size}")

    dev = resolve_device(device)
    resolve_layers(model, layers)  # UnknownLayer, with close names, before any compute
    widths: list[int] = [0] * len(layers)

    def record(j: int, name: str):
        def hook(_m, _inp, out):
            out = _as_tensor_output(out, name)
            widths[j] = int(out.shape[channel_dim(out, name, error=InterventionError)])

        return hook

    with evaluating_on(model, dev), torch.no_grad():
        # Clean pass; it also records each layer's width.
        with scoped_hooks(model, {name: record(j, name) for j, name in enumerate(layers)}):
            clean = torch.cat([_logits(model, images[s : s + batch_size].to(dev)) for s in range(0, n, batch_size)])
        if labels_t.min() < 0 or labels_t.max() >= clean.shape[1]:
            raise InterventionError(f"labels must lie in 0…{clean.shape[1] - 1} (the model's classes)")
        for name, width, ch in zip(layers, widths, channels):
            if ch and (min(ch) < 0 or max(ch) >= width):
                raise InterventionError(f"channels {ch} do not fit layer {name!r}, which has {width} channels")
        baseline_channels = random_circuit(widths, [len(set(c)) for c in channels], baseline_seed)

        def run(chans: list[list[int]]) -> torch.Tensor:
            outs = []
            for s in range(0, n, batch_size):
                with intervention(model, layers, chans, kind, pair):
                    outs.append(_logits(model, images[s : s + batch_size].to(dev)))
            return torch.cat(outs)

        intervened = run(channels)
        baseline = run(baseline_channels)

    labels_dev = labels_t.to(clean.device)
    log_clean = torch.log_softmax(clean, dim=1)
    clean_m = _metrics(log_clean, log_clean, labels_dev)
    return EvaluationResult(
        kind=kind,
        pair=pair if kind is InterventionKind.edge else 0,
        clean=Metrics(clean_m.accuracy, clean_m.true_prob, 0.0),
        intervened=_metrics(torch.log_softmax(intervened, dim=1), log_clean, labels_dev),
        baseline=_metrics(torch.log_softmax(baseline, dim=1), log_clean, labels_dev),
        edge_fraction=edge_fraction(widths, channels, kind, pair),
        baseline_edge_fraction=edge_fraction(widths, baseline_channels, kind, pair),
        n_images=int(n),
        baseline_channels=baseline_channels,
    )
