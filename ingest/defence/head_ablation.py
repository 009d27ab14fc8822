"""Head ablation against the typographic attack, in the manner of Dyslexify (docs/method.md, "Token models").

The baseline that CLA's text circuit is compared with on transformers:

1. **rank** the attention heads by how much of the written word their outputs carry: for each
   head h, the mean over paired images (the same image with and without a word written on it) of
   ‖z_h(with word) − z_h(without)‖₂ / ‖z_h(without)‖₂, with z_h the head's output before the output
   projection (`ingest.cla.heads`);
2. **ablate** the top h heads: zero-ablation (the head's output set to 0) or mean-ablation (set to
   its mean over a reference image set, per token);
3. **measure** attack success and clean accuracy with the heads ablated, beside random heads of
   the same count (`random_heads`).

Heads are (layer, head) pairs; a layer is a `PATH:heads` name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from catalog.errors import CircuitsError
from ingest.hooks import scoped_hooks

__all__ = ["HeadAblationError", "ablate_heads", "head_means", "random_heads", "rank_heads"]

Head = tuple[str, int]


class HeadAblationError(CircuitsError):
    """Head ablation asked for something the model or the images cannot give."""


@torch.no_grad()
def _head_outputs(model: nn.Module, layers: Sequence[str], x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """Each head layer's heads on `x`, (N, H, T, head_dim)."""
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def keep(name: str):
        def hook(module, args, z):
            seen[name].append(z.detach().clone())

        return hook

    model.eval()
    with scoped_hooks(model, {name: keep(name) for name in layers}):
        for s in range(0, len(x), batch_size):
            model(x[s : s + batch_size])
    return {name: torch.cat(v) for name, v in seen.items()}


def rank_heads(
    model: nn.Module, layers: Sequence[str], with_word: torch.Tensor, without: torch.Tensor, *, batch_size: int = 64
) -> list[tuple[Head, float]]:
    """Heads ordered by how much the written word changes their output (largest first).

    Args:
        model: the network (eval mode).
        layers: head layers (`PATH:heads`).
        with_word, without: the same images with and without a word written on them, (N, 3, H, W).

    Returns:
        ((layer, head), score) pairs, score = mean over images of ‖Δz_h‖₂ / ‖z_h‖₂.

    Raises:
        HeadAblationError: the two sets do not pair up.
    """
    if with_word.shape != without.shape:
        raise HeadAblationError(f"paired images differ in shape: {tuple(with_word.shape)} vs {tuple(without.shape)}")
    a = _head_outputs(model, layers, with_word, batch_size)
    b = _head_outputs(model, layers, without, batch_size)
    scored: list[tuple[Head, float]] = []
    for name in layers:
        diff = torch.linalg.vector_norm((a[name] - b[name]).flatten(2), dim=-1)  # (N, H)
        base = torch.linalg.vector_norm(b[name].flatten(2), dim=-1).clamp_min(1e-12)
        for h, s in enumerate((diff / base).mean(0).tolist()):
            scored.append(((name, h), float(s)))
    return sorted(scored, key=lambda t: -t[1])


def head_means(
    model: nn.Module, layers: Sequence[str], x: torch.Tensor, *, batch_size: int = 64
) -> dict[str, torch.Tensor]:
    """Per head layer, its heads' mean output over `x`, (H, T, head_dim), for mean-ablation."""
    return {name: z.mean(0) for name, z in _head_outputs(model, layers, x, batch_size).items()}


@contextmanager
def ablate_heads(
    model: nn.Module, heads: Sequence[Head], *, means: dict[str, torch.Tensor] | None = None
) -> Iterator[nn.Module]:
    """Zero-ablate (or, with `means`, mean-ablate) the given heads while the context is open.

    Raises:
        HeadAblationError: mean-ablation without the mean of a layer.
    """
    by_layer: dict[str, list[int]] = {}
    for layer, h in heads:
        by_layer.setdefault(layer, []).append(int(h))
    if means is not None and set(by_layer) - set(means):
        raise HeadAblationError(f"no mean output for {sorted(set(by_layer) - set(means))}: pass them to mean-ablate")

    def make(name: str, idx: list[int]):
        def hook(module, args, z):
            z = z.clone()
            z[:, idx] = 0 if means is None else means[name][idx].to(z)
            return z

        return hook

    with scoped_hooks(model, {name: make(name, idx) for name, idx in by_layer.items()}):
        yield model


def random_heads(layers: Sequence[str], n_heads: Sequence[int], count: int, seed: int) -> list[Head]:
    """`count` distinct heads drawn uniformly from all heads of `layers` (n_heads[i] each), seeded."""
    pool = [(name, h) for name, n in zip(layers, n_heads) for h in range(n)]
    if count > len(pool):
        raise HeadAblationError(f"{count} heads asked for, the layers have {len(pool)}")
    pick = np.random.default_rng(seed).choice(len(pool), size=count, replace=False)
    return [pool[i] for i in sorted(pick)]
