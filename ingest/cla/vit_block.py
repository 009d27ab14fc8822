"""Exact CLA across a pre-LN transformer block by a hand-written batched VJP (docs/results.md,
"Fast exact path for transformer blocks").

Three pair kinds between standard pre-LN blocks (x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))):

- `mlp`:   MLP activation of block k → MLP activation of block k+1 (back through fc1's row,
  ln_2, the attention with its residual, ln_1, the residual and block k's fc2);
- `heads`: a block's heads → its own MLP activation (ln_2, the residual, the output projection);
- `to_heads`: MLP activation of block k → heads of block k+1 (one head per unit: its slice of
  the attention and of the q/k/v projection, ln_1, fc2).

Into an MLP activation the cotangent at fc1's input is c_n ⊗ W1[n] (`ingest.cla.token_mlp`), so
ln_2's backward and the output projection's have a closed form per unit (rank two per token with
x̂ W_outᵀ shared); the rest runs through `ingest.cla.block_vjp` with the unit axis in the GEMM rows.

The blocks are read from their modules (`ingest.cla.block_span`). A pair uses the path only when
(1) on the probe image (`ingest.cla.probe`, `block_reproduced`) the recomputed forward reproduces
the captured values and the hand-written VJP of one random cotangent equals autograd's on the
model's own graph (a different linear map differs on a random left vector with probability 1),
and (2) on every batch the recomputed forward again reproduces the batch's values; otherwise it
takes the token-MLP or generic path (`ingest.cla.attribution`, on a second forward that keeps
autograd's graph when the batch's first did not need one).
Masks, extra ops, a norm that is not LayerNorm, dropout in the forward or a custom backward change
the values or the gradient and send the pair back to autograd.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ingest.cla.block_span import NormInputs, Span
from ingest.cla.block_vjp import (
    Attn,
    LowRank,
    Norm,
    attention,
    attention_vjp,
    backward_weight,
    head_attention_vjp,
    layer_norm,
    norm_vjp,
)
from ingest.cla.generic import Masks, _unit_cotangents
from ingest.cla.token_mlp import TokenMlp

__all__ = ["block_reproduced", "span_scores"]

_log = logging.getLogger(__name__)
_FLOAT = 4
VALUE_RTOL = 1e-4  # recomputed forward vs the captured one (float32 rounding is ~1e-6)
GRAD_RTOL = 1e-4  # hand-written VJP vs autograd on a random cotangent
_CACHE_FLOATS = 1 << 18  # 1 MiB of float32: a chunk of elementwise-only work that stays in L2
# A chunk's buffers beyond this only slow the elementwise passes between the GEMMs (vit_b_16 at
# 224 px, 2 images: 33-37 ms per unit in chunks of 4-8 units, 42-43 ms in chunks of 32-64)
_CHUNK_BYTES = 256 * 2**20


@dataclass
class _Fwd:
    """The batch's recomputed forward pieces between the two layers."""

    n1: Norm | None = None
    at: Attn | None = None
    n2: Norm | None = None
    xo: torch.Tensor | None = None  # x̂₂ W_out, (N, D)
    pm: torch.Tensor | None = None  # per head P ∘ (x̂₂ W_outᵀ Vᵀ), (B, H, T, T) (kind "mlp")
    w_back: torch.Tensor | None = None  # the attention backward's last matrix with ln_1's γ folded in (not "heads")


def _close(got: torch.Tensor, want: torch.Tensor | None) -> bool:
    if want is None or got.shape != want.shape:
        return False
    err, scale = torch.stack([(got - want).abs().max(), want.abs().max()]).tolist()  # one read back
    return err <= VALUE_RTOL * max(scale, 1e-30)


def _forward(
    span: Span, leaf: torch.Tensor, out: torch.Tensor, u: torch.Tensor | None, norms: NormInputs
) -> _Fwd | None:
    """Recompute the forward from the leaf; None unless it reproduces the captured values."""
    a = leaf.detach()
    f = _Fwd()
    with torch.no_grad():
        if span.kind == "heads":
            blk = span.up
            r = norms.get(id(blk.ln1))
            z = a.transpose(1, 2).flatten(2)  # heads (B, H, T, hd) -> (B, T, D)
            if r is None or r.shape != z.shape:
                return None
            x2 = r + F.linear(z, blk.w_out, blk.b_out)
        else:
            skip = norms.get(id(span.up.ln2))  # block k's residual stream before its MLP
            if skip is None or a.ndim != 3:
                return None
            r = skip + F.linear(a, span.up.fc2.weight, span.up.fc2.bias)
            blk = span.down
            h1, f.n1 = layer_norm(r, blk.ln1)
            z, f.at = attention(h1, blk.w_qkv, blk.b_qkv, blk.w_out, blk.heads)
            if span.kind == "to_heads":
                f.w_back = _folded_weight(f)
                return f if _close(f.at.o, out.detach()) else None
            x2 = r + F.linear(z, blk.w_out, blk.b_out)
        u_new, f.n2 = layer_norm(x2, blk.ln2)
        if u is None or not _close(u_new, u.detach()):
            return None
        f.xo = f.n2.xhat @ blk.w_out  # (N, D)
        if f.at is not None and span.kind == "mlp":
            b, nh, t, hd = f.at.v.shape
            xo_h = f.xo.view(b, t, nh, hd).transpose(1, 2)  # (B, H, T, hd)
            f.pm = (xo_h @ f.at.v.transpose(-2, -1)).mul_(f.at.p)  # (B, H, T, T)
            f.w_back = _folded_weight(f)
    return f


def _folded_weight(f: _Fwd) -> torch.Tensor:
    """The attention backward's last matrix (`backward_weight`) with ln_1's γ folded in."""
    assert f.at is not None and f.n1 is not None
    w = backward_weight(f.at)
    return w if f.n1.gamma is None else w * f.n1.gamma


def _mlp_vjp(span: Span, f: _Fwd, c: torch.Tensor, rows: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """The leaf's cotangent for per-unit cotangents c[j] (N,) ⊗ rows[j] (D,) at fc1's input.

    Returns (U, N, D_leaf): the heads' merged (B·T, D) for kind "heads", block k's MLP activation
    for kind "mlp".
    """
    assert f.n2 is not None and f.xo is not None
    b, t, d = shape
    blk = span.down
    w = rows * f.n2.gamma if f.n2.gamma is not None else rows  # (U, D)
    wc = w - w.mean(-1, keepdim=True)
    s = (w @ f.n2.xhat.T) / d  # (U, N)
    alpha = c * f.n2.rstd.view(1, -1)  # (U, N)
    beta = alpha * s
    # ln_2's input cotangent: α ⊗ wc − β ∘ x̂₂ per unit; through the output projection: α ⊗ wc W_out − β ∘ x̂₂ W_out
    pw = wc @ blk.w_out  # (U, D)
    dz = torch.addcmul(alpha.unsqueeze(-1) * pw.unsqueeze(1), beta.unsqueeze(-1), f.xo, value=-1.0)  # (U, N, D)
    if span.kind == "heads":
        return dz
    assert f.at is not None and f.n1 is not None and f.pm is not None
    u = alpha.shape[0]
    low = LowRank(alpha=alpha.view(u, b, t), beta=beta.view(u, b, t), pw=pw, pm=f.pm)
    dh = attention_vjp(dz.view(u, b, t, d), f.at, low_rank=low, w_back=f.w_back)  # γ₁ folded in
    del dz
    dr = norm_vjp(dh, f.n1, scaled=True, inplace=True)  # (U, N, D)
    dr.addcmul_(alpha.unsqueeze(-1), wc.unsqueeze(1)).addcmul_(beta.unsqueeze(-1), f.n2.xhat, value=-1.0)  # residual
    return (dr.view(-1, d) @ span.up.fc2.weight.detach()).view(u, b * t, -1)


def _heads_scores(
    span: Span,
    f: _Fwd,
    coef: torch.Tensor,
    weight: torch.Tensor,
    am: torch.Tensor,
    cols: list[int],
    chunk: int,
    heads: int,
) -> torch.Tensor:
    """(H, U) scores of a "heads" pair for downstream units `cols` (`_mlp_vjp`'s cotangent, in closed form).

    Per unit n and token t the cotangent at the heads is α[n,t] · (pw[n] − s[n,t] · x̂₂[t] W_out)
    (`_mlp_vjp`: β = α s), so |A · ∂| = |α| · |A ∘ (pw − s x̂₂ W_out)|: the per-unit GEMMs (s, pw)
    run once for all units, and each chunk makes three elementwise passes over (U, N, D) and one
    batched GEMV that sums the tokens weighted by |α|.
    """
    assert f.n2 is not None and f.xo is not None
    whole = len(cols) == coef.shape[1] and cols == list(range(len(cols)))
    rows = weight if whole else weight[cols]  # (U, D)
    c = coef.T if whole else coef[:, cols].T  # (U, N)
    w = rows * f.n2.gamma if f.n2.gamma is not None else rows
    s = (w @ f.n2.xhat.T).div_(w.shape[-1])  # (U, N)
    pw = (w - w.mean(-1, keepdim=True)) @ span.down.w_out  # (U, D)
    alpha = (c * f.n2.rstd.view(1, -1)).abs_().contiguous().unsqueeze(1)  # (U, 1, N)
    pw, s, xo = pw.unsqueeze(1), s.unsqueeze(-1), f.xo.unsqueeze(0)  # (U, 1, D), (U, N, 1), (1, N, D)
    out = am.new_empty(len(cols), 1, am.shape[1])  # (U, 1, D)
    buf = am.new_empty(min(chunk, len(cols)), *am.shape)  # one chunk's (u, N, D), reused: it stays in cache
    for k0 in range(0, len(cols), chunk):
        k1 = min(k0 + chunk, len(cols))
        t = torch.addcmul(pw[k0:k1], s[k0:k1], xo, value=-1.0, out=buf[: k1 - k0])
        torch.bmm(alpha[k0:k1], t.mul_(am).abs_(), out=out[k0:k1])
    return out.view(len(cols), heads, -1).sum(-1).T


def _heads_vjp(span: Span, f: _Fwd, dzh: torch.Tensor, heads: list[int]) -> torch.Tensor:
    """The leaf's (block k's MLP activation) cotangent for cotangents dzh[j] (B, T, hd) on head heads[j]."""
    assert f.at is not None and f.n1 is not None and f.w_back is not None
    dr = norm_vjp(head_attention_vjp(dzh, f.at, heads, w_back=f.w_back), f.n1, scaled=True, inplace=True)  # (U, N, D)
    d = dr.shape[-1]
    return (dr.view(-1, d) @ span.up.fc2.weight.detach()).view(dr.shape[0], dr.shape[1], -1)


def _grad_ok(span: Span, f: _Fwd, leaf: torch.Tensor, out: torch.Tensor, mlp: TokenMlp | None) -> bool:
    """One random cotangent: the hand-written VJP against autograd's on the engine's graph."""
    gen = torch.Generator(device=leaf.device).manual_seed(0)
    b, t = leaf.shape[0], (leaf.shape[2] if span.kind == "heads" else leaf.shape[1])
    with torch.no_grad():
        if span.kind == "to_heads":
            cot = torch.randn(out.shape, generator=gen, device=out.device)  # (B, H, T, hd)
            mine = _heads_vjp(span, f, cot.transpose(0, 1), list(range(out.shape[1]))).sum(0)
            target = out
        else:
            assert mlp is not None
            c = torch.randn(1, b * t, generator=gen, device=leaf.device)
            row = torch.randn(1, mlp.u.shape[-1], generator=gen, device=leaf.device)
            mine = _mlp_vjp(span, f, c, row, (b, t, int(mlp.u.shape[-1])))[0]
            cot, target = c.view(b, t, 1) * row, mlp.u
    (ref,) = torch.autograd.grad(target, leaf, cot, retain_graph=True, allow_unused=True)
    if ref is None:
        return False
    if span.kind == "heads":
        ref = ref.transpose(1, 2).flatten(2)
    return _close(mine.view(ref.shape), ref)


def block_reproduced(
    span: Span, out: torch.Tensor, leaf: torch.Tensor, mlp: TokenMlp | None, norms: NormInputs
) -> bool:
    """Whether the span's recomputed forward and its hand-written VJP match the engine's (`span_scores`' checks)."""
    if span.kind != "to_heads" and mlp is None:
        return False
    f = _forward(span, leaf, out, None if mlp is None else mlp.u, norms)
    return f is not None and _grad_ok(span, f, leaf, out, mlp)


def span_scores(
    span: Span,
    out: torch.Tensor,
    leaf: torch.Tensor,
    mlp: TokenMlp | None,
    norms: NormInputs,
    *,
    budget_bytes: int,
    check_grad: bool,
    neurons: Sequence[int] | None = None,
    masks: Masks | None = None,
) -> torch.Tensor | None:
    """Σ over the batch of S[m, n] for a covered pair (not yet divided by |X|), or None when the
    block does not reproduce the engine's values (or, with `check_grad`, its gradient).

    Same arguments and result as `ingest.cla.token_mlp.token_mlp_scores`, plus the `span`, the
    forward's LayerNorm inputs (`record_norm_inputs`) and whether to run the gradient check.
    """
    if span.kind != "to_heads" and mlp is None:
        return None
    f = _forward(span, leaf, out, None if mlp is None else mlp.u, norms)
    if f is None or (check_grad and not _grad_ok(span, f, leaf, out, mlp)):
        _log.info("CLA transformer-block path: values or gradient not reproduced (%s pair); using autograd", span.kind)
        return None
    m_in, m_out = masks if masks is not None else (None, None)
    g = _unit_cotangents(out, m_out)  # (B, C, P)
    c_next = g.shape[1]
    wanted = range(c_next) if neurons is None else neurons
    live = (g.abs().sum(dim=(0, 2)) > 0).nonzero().flatten().tolist()
    cols = sorted(set(live).intersection(wanted))
    a = leaf.detach()
    # |A| · |∂| = |A · ∂|: the leaf (masked) multiplies each unit's gradient, then one L1 reduction
    if span.kind == "heads":
        b, nh, t, hd = a.shape
        am = a.transpose(1, 2).reshape(b * t, nh * hd)  # (N, D), heads contiguous
        if m_in is not None:
            am = am * m_in.view(t, hd)[:, :1].repeat(b, 1)
        c_up = nh
    else:
        b, t, dm = a.shape
        am = a.reshape(b * t, dm)  # (N, Dm)
        if m_in is not None:
            am = am * m_in.repeat(b).unsqueeze(-1)
        c_up = dm
    scores = torch.zeros(c_up, c_next, device=leaf.device, dtype=torch.float32)
    if not cols:
        return scores
    n_rows, d = b * t, span.down.w_out.shape[0]
    per_unit = (8 * n_rows * d + 2 * n_rows * am.shape[1]) * _FLOAT
    if span.kind == "mlp":
        per_unit += 4 * f.at.p.numel() * _FLOAT  # type: ignore[union-attr]
    chunk = max(1, min(len(cols), budget_bytes // per_unit, _CHUNK_BYTES // per_unit))
    if span.kind == "heads":  # elementwise work only: chunks that stay in cache
        chunk = min(chunk, max(1, _CACHE_FLOATS // (n_rows * d)))
    if span.kind != "to_heads":
        assert mlp is not None
        coef = (g.transpose(1, 2) * mlp.slope).flatten(0, 1)  # (N, C): ∂‖out_n‖/∂z_n per token
    if span.kind == "heads":
        scores[:, cols] = _heads_scores(span, f, coef, mlp.weight, am, cols, chunk, c_up)  # type: ignore[union-attr]
        return scores
    ones = am.new_ones(1, am.shape[0])
    for k0 in range(0, len(cols), chunk):
        idx = cols[k0 : k0 + chunk]
        if span.kind == "to_heads":
            sel = g if idx == list(range(c_next)) else g[:, idx]  # (B, U, T·hd)
            dzh = sel.unflatten(-1, (t, -1)).transpose(0, 1)  # (U, B, T, hd), a view of (B, U, T, hd)
            grads = _heads_vjp(span, f, dzh, idx)
        else:
            grads = _mlp_vjp(span, f, coef[:, idx].T, mlp.weight[idx], (b, t, d))  # type: ignore[union-attr]
        prod = (ones @ grads.mul_(am).abs_()).squeeze(1)  # (U, D_leaf): the sum over tokens as a GEMV
        scores[:, idx] = prod.T
    return scores
