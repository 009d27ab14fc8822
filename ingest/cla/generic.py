"""Generic exact CLA for any module graph between two cuts, by autograd.

Used for layer pairs without a structural fast plan (ResNet stages, attention blocks, anything),
and by the reference implementation. The forward pass must have run with grad enabled, with the
upstream layer's output replaced by a leaf (`ingest.cla.capture`).

Two ways to run the per-neuron vector-Jacobian products, same numbers:

- `loop`: one `torch.autograd.grad` call per downstream neuron. On a CPU this is the fastest
  generic form: a batched VJP does the same dense work and measured slower on a CPU (docs/results.md).
- `batched`: chunks of neurons through `is_grads_batched` (vmap over cotangents), for GPUs, where
  one large launch beats many small ones; chunk size bounded by a memory budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ingest.cla.capture import channels_first

__all__ = ["generic_pair_scores", "reference_pair_scores"]

_FLOAT = 4


Masks = tuple[torch.Tensor | None, torch.Tensor | None]  # (upstream, downstream) 0/1 over positions


def _unit_cotangents(out: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """y / ‖y‖ per image and channel (0 for an all-zero map), as (B, C, P); with a position mask,
    over the kept positions only (the others get 0)."""
    y = channels_first(out.detach())  # (B, C, P)
    if mask is not None:
        y = y * mask
    norm = torch.linalg.vector_norm(y, dim=-1, keepdim=True)  # (B, C, 1)
    return torch.where(norm > 0, y / norm.clamp_min(torch.finfo(y.dtype).tiny), torch.zeros_like(y))


def _pair_inputs(out: torch.Tensor, leaf: torch.Tensor, masks: Masks | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A pair's downstream cotangents (B, C_next, P_next) (`_unit_cotangents`) and upstream
    magnitudes |A| (B, C_i, P_i), each under its position mask when `masks` are given."""
    m_in, m_out = masks if masks is not None else (None, None)
    absa = channels_first(leaf.detach()).abs()
    return _unit_cotangents(out, m_out), absa if m_in is None else absa * m_in


def generic_pair_scores(
    out: torch.Tensor,
    leaf: torch.Tensor,
    *,
    batched: bool,
    budget_bytes: int,
    neurons: Sequence[int] | None = None,
    graph_bytes: int = 0,
    masks: Masks | None = None,
) -> torch.Tensor:
    """Σ over the batch of S[m, n] for one pair, by autograd (not yet divided by |X|).

    Args:
        out: layer i+1's output, attached to the graph that starts at `leaf`.
        leaf: layer i's leaf (requires grad).
        batched: use `is_grads_batched` chunks instead of one call per neuron.
        budget_bytes: memory for one chunk of batched cotangents and gradients.
        neurons: downstream channels to compute (default all); other columns stay 0.
        graph_bytes: the batch's saved activations between the two layers; a batched VJP holds
            gradients of up to that size per cotangent, so chunks are sized with it.
        masks: (upstream, downstream) 0/1 position masks (`ingest.cla.tokens.position_masks`), or
            None for all positions.

    Returns:
        float32 tensor (C_i, C_{i+1}) on `leaf`'s device.
    """
    g, absa = _pair_inputs(out, leaf, masks)
    c_next = g.shape[1]
    cols = list(range(c_next)) if neurons is None else list(neurons)
    scores = torch.zeros(absa.shape[1], c_next, device=leaf.device, dtype=torch.float32)
    if not cols:
        return scores
    if not batched:
        cot = out.new_zeros(out.shape)  # contiguous (zeros_like keeps a view's strides): `view` must alias it
        view = channels_first(cot)  # writes go through to `cot`
        for n in cols:
            view[:, n] = g[:, n]
            (grad,) = torch.autograd.grad(out, leaf, cot, retain_graph=True, allow_unused=True)
            view[:, n] = 0
            if grad is not None:
                scores[:, n] = (absa * channels_first(grad).abs()).sum(dim=(0, 2))
        return scores
    per_neuron = (out.numel() + 3 * leaf.numel()) * _FLOAT + graph_bytes  # cotangent, grads, |.|, product
    chunk = max(1, min(len(cols), budget_bytes // per_neuron))
    for k in range(0, len(cols), chunk):
        idx = cols[k : k + chunk]
        cot = out.new_zeros((len(idx), *out.shape))
        view = channels_first(cot.flatten(0, 1)).unflatten(0, (len(idx), out.shape[0]))  # (n, B, C, P)
        for j, n in enumerate(idx):
            view[j, :, n] = g[:, n]
        (grad,) = torch.autograd.grad(out, leaf, cot, retain_graph=True, is_grads_batched=True, allow_unused=True)
        if grad is None:
            continue
        ga = channels_first(grad.flatten(0, 1)).unflatten(0, (len(idx), leaf.shape[0])).abs()  # (n, B, C_i, P)
        scores[:, idx] = (ga * absa).sum(dim=(1, 3)).T
    return scores


def reference_pair_scores(
    out: torch.Tensor, leaf: torch.Tensor, neurons: Sequence[int], masks: Masks | None = None
) -> torch.Tensor:
    """The plain loop of docs/method.md, "Cross-Layer Attribution": autograd of Σ_x ‖A_{i+1,n}(x)‖₂ once per neuron n.

    Args:
        out: layer i+1's output, attached to the graph that starts at `leaf`.
        leaf: layer i's leaf.
        neurons: the downstream channels to compute; other columns are NaN.
        masks: (upstream, downstream) 0/1 position masks, or None for all positions: the norm
            runs over the kept downstream positions, the sum over the kept upstream ones.

    Returns:
        float32 tensor (C_i, C_{i+1}), summed over the batch.
    """
    m_in, m_out = masks if masks is not None else (None, None)
    y = channels_first(out)
    norms = torch.linalg.vector_norm(y if m_out is None else y * m_out, dim=-1)  # (B, C_next)
    absa = channels_first(leaf.detach()).abs()  # (B, C_i, P)
    if m_in is not None:
        absa = absa * m_in
    scores = torch.full((absa.shape[1], norms.shape[1]), float("nan"), device=leaf.device)
    for n in neurons:
        (grad,) = torch.autograd.grad(norms[:, n].sum(), leaf, retain_graph=True, allow_unused=True)
        if grad is None:
            scores[:, n] = 0.0
        else:
            scores[:, n] = (absa * channels_first(grad).abs()).sum(dim=(0, 2))
    return scores
