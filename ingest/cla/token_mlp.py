"""Exact CLA into a transformer block's MLP activation, the downstream fc1 row shared (docs/method.md, "Token models").

A pair whose downstream layer is an elementwise activation module (GELU, QuickGELU, ReLU, …)
applied to an `nn.Linear`'s output, out = act(fc1(u)) with token-shaped (B, T, C) output, has
per downstream unit n

    ∂‖out_n‖₂ / ∂leaf = Σ_(b,t) g_n[b,t] · act'(z_n)[b,t] · W1[n, :] · ∂u[b,t,:] / ∂leaf

(g_n = out_n / ‖out_n‖, z = fc1(u)). The cotangent at fc1's *input* u is therefore rank one per
unit, c_n ⊗ W1[n]: it costs B·T·D to form, where the generic path pays a dense backward through
fc1 (B·T·D·C multiply-adds) for every unit. What stays per unit is the dense VJP from u back to the
leaf (LayerNorm, attention, the residual and the upstream block's fc2 or out_proj): that is the
FLOP bound of exact CLA for the pair (`bench/vit_cla.py` prints it). It runs on the engine's own forward
graph (one forward per batch, shared by every unit: the attention pattern, the LayerNorm
statistics), as a loop of autograd calls or in chunks of units through `is_grads_batched`
(vmap over the cotangents), the chunk size from the memory budget.

On vit_b_16 the generic path's per-unit backward is the reference loop's, op for op (fc1's dense
input gradient is about half of it); see docs/results.md, "Vision transformers", for what was
measured about the generic path against the loop.

Where the structure does not hold (another downstream module, a head layer, a 4-D output), the
pair takes the generic path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ingest.cla.capture import channels_first
from ingest.cla.generic import Masks, _pair_inputs
from ingest.cla.heads import is_head_layer

__all__ = ["ELEMENTWISE", "MlpCalls", "TokenMlp", "mlp_layers", "record_mlp_calls", "token_mlp", "token_mlp_scores"]

_FLOAT = 4
# elementwise activations by class name (open_clip's QuickGELU is not a torch class)
ELEMENTWISE = frozenset({"GELU", "QuickGELU", "ReLU", "SiLU", "Tanh", "Sigmoid", "Hardswish", "Mish", "GELUTanh"})


@dataclass(frozen=True)
class TokenMlp:
    """One batch's pieces of out = act(fc1(u)) for a token pair.

    Attributes:
        u: fc1's input, attached to the graph from the upstream leaf, (B, T, D).
        weight: fc1's weight (C, D).
        slope: act'(z), detached, (B, T, C).
    """

    u: torch.Tensor
    weight: torch.Tensor
    slope: torch.Tensor


MlpCalls = dict[str, tuple[nn.Linear, torch.Tensor, torch.Tensor]]  # layer -> (fc1, its input u, its output z)


def mlp_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """The layers after the first whose module is an elementwise activation (candidate MLP pairs)."""
    named = dict(model.named_modules())
    return [n for n in layers[1:] if not is_head_layer(n) and type(named.get(n)).__name__ in ELEMENTWISE]


@contextmanager
def record_mlp_calls(model: nn.Module, layers: Sequence[str]) -> Iterator[MlpCalls]:
    """During a forward pass, record for each activation layer of `mlp_layers` the `nn.Linear`
    call that produced its input, when the activation is applied directly to that call's output.
    Hooks are removed on exit; nothing is recorded for `layers` without candidates.
    """
    calls: MlpCalls = {}
    last: list[tuple[nn.Linear, torch.Tensor, torch.Tensor]] = []
    handles = []

    def on_linear(module, args, output):
        last[:] = [(module, args[0], output)] if len(args) == 1 and isinstance(output, torch.Tensor) else []

    def on_act(name: str):
        def hook(module, args):
            if last and len(args) == 1 and args[0] is last[0][2]:
                calls[name] = last[0]

        return hook

    try:
        names = mlp_layers(model, layers)
        if names:
            handles = [m.register_forward_hook(on_linear) for m in model.modules() if isinstance(m, nn.Linear)]
            handles += [model.get_submodule(n).register_forward_pre_hook(on_act(n)) for n in names]
            handles += [
                m.register_forward_pre_hook(_sequence_major, with_kwargs=True)
                for m in model.modules()
                if isinstance(m, nn.MultiheadAttention) and m.batch_first
            ]
        yield calls
    finally:
        for h in handles:
            h.remove()


def _sequence_major(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """Give a batch-first `nn.MultiheadAttention` its (B, T, D) inputs stored sequence-major.

    The module transposes them to (T, B, D) and projects them; from a batch-major tensor that
    transposed view is not contiguous, so its input projection runs as T small matmuls that each
    read the whole (3D × D) weight, in the forward and in every unit's backward (on vit_b_16 at
    224 px, half of a unit's backward time; in batched VJPs the unit axis multiplies the reads).
    Stored sequence-major, the transposed view is contiguous and the projection is one matmul. The
    values are the same; the copy is one more op in the graph.
    """
    if len(args) != 3 or not all(isinstance(a, torch.Tensor) and a.ndim == 3 for a in args):
        return None

    def major(t: torch.Tensor) -> torch.Tensor:
        return t.transpose(0, 1).contiguous().transpose(0, 1)

    q, k, v = args
    nq = major(q)
    nk = nq if k is q else major(k)
    nv = nk if v is k else (nq if v is q else major(v))
    return (nq, nk, nv), kwargs


def token_mlp(
    model: nn.Module, name: str, out: torch.Tensor, calls: MlpCalls, *, graph: bool = True
) -> TokenMlp | None:
    """The pair's fc1 pieces when layer `name` is act(fc1(u)) on tokens in this forward, else None.

    Args:
        model: the network.
        name: the downstream layer's name.
        out: its captured output, (B, T, C).
        calls: the forward's recorded fc1 calls (`record_mlp_calls`).
        graph: u must be attached to autograd's graph (False: a caller that only reads the
            values, `ingest.cla.vit_block`, on a forward without a graph).
    """
    if name not in calls or out.ndim != 3:
        return None
    fc1, u, z = calls[name]
    if z.shape != out.shape or u.ndim != 3 or (graph and not u.requires_grad) or fc1.weight.shape[0] != out.shape[-1]:
        return None
    act = model.get_submodule(name)
    if type(act) is nn.GELU:  # the derivative autograd takes, without building a graph for it
        zd = z.detach()
        y = act.forward(zd)  # `forward`, not `__call__`: the capture hook must not fire again
        slope = torch.ops.aten.gelu_backward(torch.ones_like(zd), zd, approximate=act.approximate)
    else:
        with torch.enable_grad():
            zz = z.detach().requires_grad_(True)
            y = act.forward(zz)
            if not isinstance(y, torch.Tensor) or y.shape != out.shape:
                return None
            (slope,) = torch.autograd.grad(y, zz, torch.ones_like(y))
    if not torch.equal(y.detach(), out.detach()):
        return None  # not the activation the forward ran: the generic path
    return TokenMlp(u=u, weight=fc1.weight.detach(), slope=slope.detach())


def token_mlp_scores(
    out: torch.Tensor,
    leaf: torch.Tensor,
    mlp: TokenMlp,
    *,
    batched: bool,
    budget_bytes: int,
    neurons: Sequence[int] | None = None,
    masks: Masks | None = None,
) -> torch.Tensor:
    """Σ over the batch of S[m, n] for a token pair into an MLP activation (not yet divided by |X|).

    Same arguments and result as `ingest.cla.generic.generic_pair_scores`, plus the pair's `mlp`
    pieces (`token_mlp`). Units whose map is zero on every image are skipped (their column is 0).
    """
    g, absa = _pair_inputs(out, leaf, masks)  # (B, C, T), (B, C_i, P)
    c_next = g.shape[1]
    scores = torch.zeros(absa.shape[1], c_next, device=leaf.device, dtype=torch.float32)
    wanted = range(c_next) if neurons is None else neurons
    live = (g.abs().sum(dim=(0, 2)) > 0).nonzero().flatten().tolist()
    cols = sorted(set(live).intersection(wanted))
    if not cols:
        return scores
    coef = g.transpose(1, 2) * mlp.slope  # (B, T, C): ∂‖out_n‖/∂z_n per token
    u = mlp.u
    per_unit = (u.numel() * 16 + 4 * leaf.numel()) * _FLOAT  # cotangent, the backward's temporaries, |grad|
    chunk = 1 if not batched else max(1, min(len(cols), budget_bytes // per_unit))
    for k in range(0, len(cols), chunk):
        idx = cols[k : k + chunk]
        cot = coef[:, :, idx].permute(2, 0, 1).unsqueeze(-1) * mlp.weight[idx][:, None, None, :]  # (n, B, T, D)
        grads = None
        if batched and len(idx) > 1:
            try:
                (grads,) = torch.autograd.grad(
                    u, leaf, cot, retain_graph=True, is_grads_batched=True, allow_unused=True
                )
            except RuntimeError:  # vmap cannot batch some op (e.g. a custom autograd.Function): one call each
                batched = False
        if not batched or len(idx) == 1:
            one = [torch.autograd.grad(u, leaf, c, retain_graph=True, allow_unused=True)[0] for c in cot]
            grads = None if one[0] is None else torch.stack(one)
        if grads is None:
            continue
        ga = channels_first(grads.flatten(0, 1)).unflatten(0, (len(idx), leaf.shape[0]))  # (n, B, C_i, P)
        # in place (the gradients are this call's own); not einsum: it copies per channel here
        scores[:, idx] = ga.abs_().mul_(absa).sum(dim=(1, 3)).T
    return scores
