"""The reference CLA loop (docs/method.md, "Cross-Layer Attribution"): per batch and layer pair, one autograd call per downstream
neuron. Slow and obviously correct; the tests compare the engine (`ingest.cla.attribute`) with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ingest.cla.attribution import CLAError, Progress, _check_images
from ingest.cla.capture import capture, channels_first, check_layer_chain, resolve_layers
from ingest.cla.generic import reference_pair_scores
from ingest.cla.probe import prepared
from ingest.cla.tokens import check_tokens, position_masks
from ingest.hooks import resolve_device

__all__ = ["attribute_reference"]


def attribute_reference(
    model: nn.Module,
    layers: Sequence[str],
    images: torch.Tensor,
    *,
    neurons: Sequence[Sequence[int] | None] | None = None,
    tokens: str = "all",
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> list[np.ndarray]:
    """The plain loop of docs/method.md, "Cross-Layer Attribution": per batch and pair, one autograd call per downstream neuron.

    Slow, obviously correct; the tests compare `attribute` against it.

    Args:
        model: the network (restored afterwards, as in `attribute`).
        layers: dotted module paths, in forward order.
        images: preprocessed float images, (N, C, H, W).
        neurons: per pair, the downstream channels to compute (None: all); the other columns of
            that matrix are NaN. For timing the reference on a subset.
        tokens: which tokens of token layers count ("all", "patches", "cls"; `ingest.cla.tokens`).
        batch_size: images per forward pass.
        device: where to compute.
        progress: called as progress(done, total) after each pair of each batch.

    Returns:
        S_i per adjacent pair, float32 arrays (C_i, C_{i+1}).
    """
    _check_images(images)
    check_tokens(tokens)
    if len(layers) < 2:
        raise CLAError("CLA needs at least two layers: pass the layers in forward order")
    resolve_layers(model, layers)
    dev = resolve_device(device)
    n_images, n_pairs = images.shape[0], len(layers) - 1
    total = math.ceil(n_images / batch_size) * n_pairs
    sums: list[torch.Tensor] = []
    with prepared(model, dev):
        for step, b0 in enumerate(range(0, n_images, batch_size)):
            x = images[b0 : b0 + batch_size].to(dev, torch.float32)
            with capture(model, layers) as cap, torch.enable_grad():
                model(x)
                check_layer_chain(cap)
                leaves, outs = cap.leaf_list(), cap.output_list()
                masks = position_masks(layers, leaves, tokens)
                for i in range(n_pairs):
                    width = channels_first(outs[i + 1]).shape[1]
                    wanted = None if neurons is None else neurons[i]
                    sel = range(width) if wanted is None else wanted
                    s = reference_pair_scores(outs[i + 1], leaves[i], list(sel), (masks[i], masks[i + 1])).double()
                    if step == 0:
                        sums.append(s)
                    else:
                        sums[i] += s
                    if progress is not None:
                        progress(step * n_pairs + i + 1, total)
            del leaves, outs
    return [(s / n_images).to(torch.float32).cpu().numpy() for s in sums]
