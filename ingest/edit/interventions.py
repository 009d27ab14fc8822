"""Interventions on a circuit and their evaluation (DESIGN §5).

- **Circuit pruning** zeroes every circuit neuron in every circuit layer.
- **Edge pruning** of the layer pair (L_i, L_{i+1}) computes `A_{i+1}` twice — clean, and with the
  circuit's neurons of `L_i` zeroed — and continues the forward pass with the circuit's neurons of
  `L_{i+1}` taken from the second and every other channel from the first. Only the paths from the
  circuit's `L_i` neurons into its `L_{i+1}` neurons are cut; skip paths and the other channels
  see the clean `L_i`. It works for any model: the hook on `L_{i+1}` re-runs the model's forward
  (with `L_i` zeroed, stopped at `L_{i+1}`) to get the corrupted activations, so each forward
  costs up to two.
- **Baselines**: a random circuit of the same shape, seeded.

Every intervention is a context manager: its hooks are removed in `finally`, so a model never
keeps a stray hook, even when the forward pass raises. Layers are dotted module paths, as stored
in the catalog. A neuron is a channel: dim 1 of `(B, C, H, W)` and `(B, C)` outputs, the last dim
of token outputs `(B, N, D)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from catalog.errors import CircuitsError
from ingest.cla.capture import resolve_layers
from ingest.cla.search import Circuit

__all__ = [
    "EvaluationResult",
    "InterventionError",
    "Metrics",
    "edge_fraction",
    "evaluate",
    "intervention",
    "prune_circuit",
    "prune_edges",
    "random_circuit",
]

KINDS = ("circuit", "edge")


class InterventionError(CircuitsError):
    """An intervention cannot be applied as asked (layer names, channels, pair, inputs)."""


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


@dataclass(frozen=True)
class EvaluationResult:
    """An intervention and its random baseline, evaluated on one image set.

    Attributes:
        kind: "circuit" or "edge".
        pair: for edge pruning, the index i of the cut L_i → L_{i+1} (0 for circuit pruning).
        clean: the unmodified model.
        intervened: the model with the circuit pruned.
        baseline: the model with a random circuit of the same shape pruned the same way.
        edge_fraction: fraction of adjacent-layer neuron pairs the intervention cuts.
        baseline_edge_fraction: the same for the baseline circuit.
        n_images: images evaluated.
        baseline_channels: the random circuit that was pruned for the baseline.
    """

    kind: str
    pair: int
    clean: Metrics
    intervened: Metrics
    baseline: Metrics
    edge_fraction: float
    baseline_edge_fraction: float
    n_images: int
    baseline_channels: list[list[int]]


class _StopForward(Exception):
    """Raised inside the nested corrupted forward pass once it has reached L_{i+1}."""


def _channel_dim(t: torch.Tensor, layer: str) -> int:
    if t.dim() in (2, 4):
        return 1
    if t.dim() == 3:
        return 2  # (B, N, D): a neuron is a feature dimension
    raise InterventionError(f"layer {layer!r} outputs shape {tuple(t.shape)}: expected (B, C[, H, W]) or (B, N, D)")


def _as_tensor_output(out: Any, layer: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise InterventionError(f"layer {layer!r} outputs a {type(out).__name__}, not a tensor: choose another layer")
    return out


def _index(channels: Sequence[int], out: torch.Tensor, dim: int, layer: str) -> torch.Tensor:
    width = out.shape[dim]
    idx = [int(c) for c in channels]
    if idx and (min(idx) < 0 or max(idx) >= width):
        raise InterventionError(f"channels {idx} do not fit layer {layer!r}, which has {width} channels")
    return torch.as_tensor(idx, dtype=torch.long, device=out.device)


def _zeroed(out: torch.Tensor, channels: Sequence[int], layer: str) -> torch.Tensor:
    """A copy of `out` with the given channels set to zero (out of place: autograd-safe)."""
    dim = _channel_dim(out, layer)
    return out.index_fill(dim, _index(channels, out, dim, layer), 0.0)


def _check_circuit(layers: Sequence[str], channels: Sequence[Sequence[int]]) -> list[list[int]]:
    if len(layers) != len(channels):
        raise InterventionError(f"{len(layers)} layers but {len(channels)} channel lists: give one list per layer")
    if len(set(layers)) != len(layers):
        raise InterventionError(f"a layer is named twice in {list(layers)}")
    return [[int(c) for c in chans] for chans in channels]


@contextmanager
def prune_circuit(model: nn.Module, layers: Sequence[str], channels: Sequence[Sequence[int]]) -> Iterator[None]:
    """Zero every circuit neuron in every circuit layer while the context is open.

    Args:
        model: the network; its forward passes inside the context are pruned.
        layers: dotted module paths of the circuit layers.
        channels: per layer, the channels to zero.

    Raises:
        UnknownLayer: a layer is not a module of `model` (from `ingest.cla.capture`).
        InterventionError: mismatched lengths, or (at forward time) a channel outside its layer.
    """
    chans = _check_circuit(layers, channels)
    modules = resolve_layers(model, layers)
    handles = []
    try:
        for name, module, ch in zip(layers, modules, chans):
            def hook(_m, _inp, out, name=name, ch=ch):
                return _zeroed(_as_tensor_output(out, name), ch, name)

            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def prune_edges(
    model: nn.Module, layers: Sequence[str], channels: Sequence[Sequence[int]], pair: int = 0
) -> Iterator[None]:
    """Cut the circuit's edges from L_pair into L_pair+1 while the context is open.

    Each forward pass of `model` inside the context runs a second, nested forward (stopped at
    L_{i+1}) with the circuit's L_i neurons zeroed; the circuit's L_{i+1} neurons are taken from
    it and all other channels from the clean pass.

    Args:
        model: the network; it must be called as `model(*args, **kwargs)` on its inputs.
        layers: dotted module paths of the circuit layers.
        channels: per layer, the circuit's channels.
        pair: index i of the cut L_i → L_{i+1} (default: the first two circuit layers).

    Raises:
        UnknownLayer: a layer is not a module of `model` (from `ingest.cla.capture`).
        InterventionError: a pair out of range, a channel outside its layer, or (at forward time)
            L_{i+1} that does not run after L_i.
    """
    chans = _check_circuit(layers, channels)
    if not 0 <= pair < len(layers) - 1:
        raise InterventionError(f"edge pair {pair} is out of range for {len(layers)} layers: use 0…{len(layers) - 2}")
    src_name, dst_name = layers[pair], layers[pair + 1]
    src_ch, dst_ch = chans[pair], chans[pair + 1]
    src, dst = resolve_layers(model, [src_name, dst_name])
    state: dict[str, Any] = {"corrupt": False, "inputs": None, "src_ran": False, "corrupted": None}

    def root_pre(_m, args, kwargs):
        if not state["corrupt"]:
            state["inputs"] = (args, kwargs)

    def src_hook(_m, _inp, out):
        if state["corrupt"]:
            state["src_ran"] = True
            return _zeroed(_as_tensor_output(out, src_name), src_ch, src_name)
        return None

    def dst_hook(_m, _inp, out):
        out = _as_tensor_output(out, dst_name)
        if state["corrupt"]:
            state["corrupted"] = out
            raise _StopForward
        args, kwargs = state["inputs"]
        state.update(corrupt=True, src_ran=False, corrupted=None)
        try:
            model(*args, **kwargs)
        except _StopForward:
            pass
        finally:
            state["corrupt"] = False
        corrupted, src_ran = state["corrupted"], state["src_ran"]
        state["corrupted"] = None
        if corrupted is None or not src_ran:
            raise InterventionError(
                f"layer {dst_name!r} is not computed from layer {src_name!r}: "
                "edge pruning needs the pair in forward order"
            )
        assert corrupted.shape == out.shape, "the nested pass changed the shape of L_{i+1}"
        dim = _channel_dim(out, dst_name)
        idx = _index(dst_ch, out, dim, dst_name)
        return out.index_copy(dim, idx, corrupted.index_select(dim, idx))

    handles = []
    try:
        handles.append(model.register_forward_pre_hook(root_pre, with_kwargs=True))
        handles.append(src.register_forward_hook(src_hook))
        handles.append(dst.register_forward_hook(dst_hook))
        yield
    finally:
        for h in handles:
            h.remove()
        state.update(inputs=None, corrupted=None)  # drop references to the last batch


def intervention(
    model: nn.Module, layers: Sequence[str], channels: Sequence[Sequence[int]], kind: str, pair: int = 0
):
    """The context manager for `kind` ("circuit" or "edge"), see `prune_circuit` and `prune_edges`.

    Raises:
        InterventionError: an unknown kind.
    """
    if kind == "circuit":
        return prune_circuit(model, layers, channels)
    if kind == "edge":
        return prune_edges(model, layers, channels, pair)
    raise InterventionError(f"unknown intervention kind {kind!r}: use circuit or edge")


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
    ks = [int(k_per_layer)] * len(widths) if isinstance(k_per_layer, (int, np.integer)) else [int(k) for k in k_per_layer]
    if len(ks) != len(widths):
        raise InterventionError(f"{len(ks)} k values for {len(widths)} layers")
    rng = np.random.default_rng(seed)
    out = []
    for i, (w, k) in enumerate(zip(widths, ks)):
        if not 0 <= k <= w:
            raise InterventionError(f"cannot draw {k} channels from layer {i}, which has {w}")
        out.append(sorted(int(c) for c in rng.choice(int(w), size=k, replace=False)))
    return out


def edge_fraction(widths: Sequence[int], channels: Sequence[Sequence[int]], kind: str, pair: int = 0) -> float:
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
    if kind == "circuit":
        cut = sum(
            int(widths[i]) * int(widths[i + 1]) - (int(widths[i]) - ks[i]) * (int(widths[i + 1]) - ks[i + 1])
            for i in range(len(widths) - 1)
        )
    elif kind == "edge":
        if not 0 <= pair < len(widths) - 1:
            raise InterventionError(f"edge pair {pair} is out of range for {len(widths)} layers")
        cut = ks[pair] * ks[pair + 1]
    else:
        raise InterventionError(f"unknown intervention kind {kind!r}: use circuit or edge")
    return cut / total


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
    kind: str = "circuit",
    pair: int = 0,
    baseline_seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "auto",
) -> EvaluationResult:
    """Evaluate an intervention on a circuit and on a random circuit of the same shape.

    Args:
        model: a classifier returning logits `(N, classes)`; it is moved to `device`, run in eval
            mode, and its train/eval mode is restored afterwards.
        channels_or_circuit: a `Circuit` or one channel list per layer.
        images: preprocessed images `(N, 3, H, W)`.
        labels: true class per image `(N,)`.
        layers: the circuit's layers (dotted module paths), in forward order.
        kind: "circuit" (prune every circuit neuron) or "edge" (cut L_pair → L_pair+1).
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
    channels = _check_circuit(layers, channels)
    if kind not in KINDS:
        raise InterventionError(f"unknown intervention kind {kind!r}: use circuit or edge")
    if kind == "edge" and not 0 <= pair < len(layers) - 1:
        raise InterventionError(f"edge pair {pair} is out of range for {len(layers)} layers: use 0…{len(layers) - 2}")
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise InterventionError("images must be a preprocessed float tensor (N, 3, H, W): see ingest.zoo.registry.preprocess")
    labels_t = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long().reshape(-1)
    n = images.shape[0]
    if labels_t.shape[0] != n or n == 0:
        raise InterventionError(f"{n} images but {labels_t.shape[0]} labels: give one label per image")
    if batch_size < 1:
        raise InterventionError(f"batch_size must be ≥ 1, got {batch_size}")

    dev = _resolve_device(device)
    modules = resolve_layers(model, layers)
    was_training = model.training
    model.to(dev).eval()
    widths: list[int] = [0] * len(layers)
    try:
        with torch.no_grad():
            # Clean pass; it also records each layer's width.
            handles = []
            try:
                for j, (name, module) in enumerate(zip(layers, modules)):
                    def record(_m, _inp, out, j=j, name=name):
                        out = _as_tensor_output(out, name)
                        widths[j] = int(out.shape[_channel_dim(out, name)])

                    handles.append(module.register_forward_hook(record))
                clean = torch.cat([_logits(model, images[s:s + batch_size].to(dev)) for s in range(0, n, batch_size)])
            finally:
                for h in handles:
                    h.remove()
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
                        outs.append(_logits(model, images[s:s + batch_size].to(dev)))
                return torch.cat(outs)

            intervened = run(channels)
            baseline = run(baseline_channels)
    finally:
        model.train(was_training)

    labels_dev = labels_t.to(clean.device)
    log_clean = torch.log_softmax(clean, dim=1)
    clean_m = _metrics(log_clean, log_clean, labels_dev)
    return EvaluationResult(
        kind=kind,
        pair=pair if kind == "edge" else 0,
        clean=Metrics(clean_m.accuracy, clean_m.true_prob, 0.0),
        intervened=_metrics(torch.log_softmax(intervened, dim=1), log_clean, labels_dev),
        baseline=_metrics(torch.log_softmax(baseline, dim=1), log_clean, labels_dev),
        edge_fraction=edge_fraction(widths, channels, kind, pair),
        baseline_edge_fraction=edge_fraction(widths, baseline_channels, kind, pair),
        n_images=int(n),
        baseline_channels=baseline_channels,
    )
