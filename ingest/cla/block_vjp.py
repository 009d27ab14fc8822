"""Hand-written VJPs through a pre-LN transformer block, batched over CLA units (docs/results.md,
"Fast exact path for transformer blocks").

Every function takes cotangents with a leading unit axis U and folds it into the rows (or the
free columns) of its matrix products: a (U, B, T, D) cotangent through a linear map is one
(U·B·T, D) × (D, k) GEMM, and the attention backward is one batched GEMM per (image, head) whose
other dimension is U·T or U·head_dim. The forward pieces they need (a LayerNorm's x̂ and 1/σ,
the attention's Q, K, V and softmax P) are computed once per batch and shared by every unit.

Formulas (row vectors, y = x Wᵀ + b; P = softmax(Q Kᵀ · s), s = 1/√head_dim, O = P V):

    linear:     dx = dy W
    LayerNorm:  g = dy ∘ γ;  dx = (g − mean(g) − x̂ ∘ mean(g ∘ x̂)) / σ
    attention:  dV = Pᵀ dO;  dP = dO Vᵀ;  dS = P ∘ (dP − rowsum(dP ∘ P));  dQ = s·dS K;  dK = s·dSᵀ Q

`ingest.cla.vit_block` reads the block's modules, checks these against autograd, and scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Attn",
    "LowRank",
    "Norm",
    "attention",
    "attention_vjp",
    "backward_weight",
    "head_attention_vjp",
    "layer_norm",
    "norm_vjp",
]


@dataclass(frozen=True)
class Norm:
    """A LayerNorm's forward pieces over N rows: x̂ (N, D), 1/σ (N, 1), γ (D,) or None."""

    xhat: torch.Tensor
    rstd: torch.Tensor
    gamma: torch.Tensor | None


def layer_norm(x: torch.Tensor, ln: nn.LayerNorm) -> tuple[torch.Tensor, Norm]:
    """LayerNorm over the last axis of x (..., D) as `ln` computes it, and its pieces (rows flattened)."""
    d = x.shape[-1]
    rows = x.reshape(-1, d)  # (N, D)
    gamma = None if ln.weight is None else ln.weight.detach()
    beta = None if ln.bias is None else ln.bias.detach()
    y, mu, rstd = torch.native_layer_norm(rows, [d], gamma, beta, ln.eps)  # LayerNorm's own kernel; (N, 1) stats
    xhat = (rows - mu).mul_(rstd)
    return y.view(x.shape), Norm(xhat=xhat, rstd=rstd, gamma=gamma)


def norm_vjp(dy: torch.Tensor, n: Norm, *, scaled: bool = False, inplace: bool = False) -> torch.Tensor:
    """LayerNorm's input cotangent for dy (U, N, D): the closed-form Jacobian, x̂ and σ shared.

    Args:
        dy: the output cotangents.
        n: the forward's pieces.
        scaled: dy is already multiplied by γ (a caller that folded γ into its last GEMM).
        inplace: dy may be overwritten (and is returned).
    """
    if scaled or n.gamma is None:
        g = dy if inplace else dy.clone()
    else:
        g = dy.mul_(n.gamma) if inplace else dy * n.gamma
    mean_g = g.mean(-1, keepdim=True)  # (U, N, 1)
    mean_gx = torch.einsum("und,nd->un", g, n.xhat).unsqueeze(-1).div_(g.shape[-1])  # (U, N, 1)
    return g.sub_(mean_g).addcmul_(n.xhat, mean_gx, value=-1.0).mul_(n.rstd)


@dataclass(frozen=True)
class Attn:
    """One attention call's pieces: q, k, v (B, H, T, hd), softmax p (B, H, T, T), its output o = p v, the scale s,
    the packed projection w_qkv (3D, D) ([q; k; v] rows, heads contiguous) and the output projection w_out (D, D)."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    p: torch.Tensor
    o: torch.Tensor
    scale: float
    w_qkv: torch.Tensor
    w_out: torch.Tensor


def attention(
    h: torch.Tensor, w_qkv: torch.Tensor, b_qkv: torch.Tensor | None, w_out: torch.Tensor, heads: int
) -> tuple[torch.Tensor, Attn]:
    """Multi-head self-attention's heads before the output projection, (B, T, D), and its pieces.

    Args:
        h: the attention's input (B, T, D).
        w_qkv, b_qkv: the packed q/k/v projection (3D, D) and its bias (or None).
        w_out: the output projection's weight (D, D) (kept for the backward).
        heads: H.
    """
    b, t, d = h.shape
    hd = d // heads
    qkv = F.linear(h, w_qkv, b_qkv).view(b, t, 3, heads, hd).permute(2, 0, 3, 1, 4)
    q, k, v = (x.contiguous() for x in qkv)  # each (B, H, T, hd), contiguous for every GEMM after
    scale = 1.0 / math.sqrt(hd)
    p = (q @ k.transpose(-2, -1) * scale).softmax(-1)  # (B, H, T, T)
    o = p @ v  # (B, H, T, hd)
    z = o.transpose(1, 2).reshape(b, t, d)  # (B, T, D)
    return z, Attn(q=q, k=k, v=v, p=p, o=o, scale=scale, w_qkv=w_qkv.detach(), w_out=w_out.detach())


@dataclass(frozen=True)
class LowRank:
    """Cotangents on the heads of the form dO[j] = α[j] ⊗ pw[j] − β[j] ∘ X per token, X shared
    (into an MLP activation: X = x̂₂ W_outᵀ, `ingest.cla.vit_block`): then dP = α (V pw)ᵀ − β ∘ M
    with M = X Vᵀ per head, formed elementwise instead of a GEMM whose inner dimension is head_dim.

    Attributes:
        alpha, beta: (U, B, T).
        pw: (U, D).
        pm: P ∘ M, (B, H, T, T), shared by every unit.
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    pw: torch.Tensor
    pm: torch.Tensor


def attention_vjp(
    dz: torch.Tensor, at: Attn, *, low_rank: LowRank | None = None, w_back: torch.Tensor | None = None
) -> torch.Tensor:
    """The attention input's cotangent for cotangents dz (U, B, T, D) on the heads (before the output projection).

    Per (image, head) every product is one GEMM over all units: dP and dQ with U·T rows, dV with
    U·head_dim columns; only dK, whose left factor differs per unit, is batched per unit.
    rowsum(dP ∘ P) is dO · O per token (O = P V), so it costs T·hd, not T². Q, K and V all come
    from the same input, so the result is [dQ dK dV] (U·B·T, 3D) times the projection: one GEMM.

    Args:
        dz: the cotangents.
        at: the forward's pieces.
        low_rank: dz's closed form, when the caller has it (`LowRank`).
        w_back: the matrix of the last GEMM when the caller folded more into it (default
            `backward_weight(at)`).

    Returns:
        (U, B·T, D).
    """
    u, b, t, d = dz.shape
    nh, hd = at.q.shape[1], at.q.shape[3]
    heads = dz.view(u, b, t, nh, hd)
    cols = heads.permute(1, 3, 2, 0, 4).reshape(b, nh, t, u * hd)  # (B, H, T, U·hd): units in the columns
    buf = dz.new_empty(u, b, t, 3, nh, hd)  # [dQ dK dV] packed as the projection's rows
    dv = (at.p.transpose(-2, -1) @ cols).view(b, nh, t, u, hd)  # Pᵀ dO
    buf[:, :, :, 2] = dv.permute(3, 0, 2, 1, 4)
    rowsum = (cols.view(b, nh, t, u, hd) @ at.o.unsqueeze(-1)).transpose(2, 3)  # Σ_s dP ∘ P = dO · O, (B, H, U, T, 1)
    p = at.p.unsqueeze(2)  # (B, H, 1, T, S)
    if low_rank is None:
        rows = heads.permute(1, 3, 0, 2, 4).reshape(b, nh, u * t, hd)  # (B, H, U·T, hd): units in the rows
        ds = (rows @ at.v.transpose(-2, -1)).view(b, nh, u, t, t)  # dP = dO Vᵀ
        ds.sub_(rowsum).mul_(p)  # dS = P ∘ (dP − rowsum)
    else:  # dS = P ∘ (α (V pw)ᵀ − rowsum) − β ∘ (P ∘ M)
        vp = torch.einsum("bhsd,uhd->bhus", at.v, low_rank.pw.view(u, nh, hd)).unsqueeze(3)  # (B, H, U, 1, S)
        alpha = low_rank.alpha.permute(1, 0, 2).reshape(b, 1, u, t, 1)
        beta = low_rank.beta.permute(1, 0, 2).reshape(b, 1, u, t, 1)
        ds = dz.new_empty(b, nh, u, t, t)  # contiguous, as the GEMMs after it need
        torch.addcmul(rowsum.neg(), alpha, vp, out=ds)
        ds.mul_(p).addcmul_(beta, low_rank.pm.unsqueeze(2), value=-1.0)
    dq = (ds.view(b, nh, u * t, t) @ at.k).view(b, nh, u, t, hd)
    buf[:, :, :, 0] = dq.permute(2, 0, 3, 1, 4)
    dk = ds.transpose(-2, -1) @ at.q.unsqueeze(2)  # (B, H, U, S, hd)
    buf[:, :, :, 1] = dk.permute(2, 0, 3, 1, 4)
    w = backward_weight(at) if w_back is None else w_back
    return (buf.view(u * b * t, 3 * d) @ w).view(u, b * t, d)


def backward_weight(at: Attn) -> torch.Tensor:
    """w_qkv with its q and k rows times the softmax scale s (dQ and dK above leave s out), (3D, D)."""
    d = at.w_qkv.shape[1]
    scale = torch.tensor([at.scale, at.scale, 1.0], dtype=at.w_qkv.dtype, device=at.w_qkv.device)
    return (at.w_qkv.view(3, d, d) * scale.view(3, 1, 1)).view(3 * d, d)


def head_attention_vjp(
    dzh: torch.Tensor, at: Attn, heads: list[int], *, w_back: torch.Tensor | None = None
) -> torch.Tensor:
    """The attention input's cotangent when unit j's cotangent dzh[j] (B, T, hd) sits on head heads[j] only.

    Only that head's slice of the attention and of w_qkv enters: per unit one head's backward
    (batched over images and units in the attention's own (B, H, T, ·) layout, so a `dzh` that is
    a transposed view of (B, U, T, hd) costs no copy) and a (B·T, 3·hd) × (3·hd, D) product.
    rowsum(dP ∘ P) is dO · O per token, as in `attention_vjp`.

    Args:
        dzh: (U, B, T, hd) cotangents.
        at: the forward's pieces.
        heads: the head of each unit.
        w_back: the matrix of the last GEMM when the caller folded more into it (default
            `backward_weight(at)`).

    Returns:
        (U, B·T, D).
    """
    u, b, t, hd = dzh.shape
    d = at.w_qkv.shape[1]
    w = (backward_weight(at) if w_back is None else w_back).view(3, -1, hd, d)  # (3, H, hd, D)
    dz = dzh.transpose(0, 1)  # (B, U, T, hd)
    if heads == list(range(at.q.shape[1])):  # every head in order: no gathers
        p, q, k, v, o = at.p, at.q, at.k, at.v, at.o
    else:
        idx = torch.tensor(heads, device=dzh.device)
        p, q, k, v, o = (x.index_select(1, idx) for x in (at.p, at.q, at.k, at.v, at.o))
        w = w.index_select(1, idx)
    rowsum = (dz * o).sum(-1, keepdim=True)  # (B, U, T, 1)
    ds = (dz @ v.transpose(-2, -1)).sub_(rowsum).mul_(p)  # dS = P ∘ (dP − rowsum), (B, U, T, S)
    packed = torch.cat([ds @ k, ds.transpose(-2, -1) @ q, p.transpose(-2, -1) @ dz], dim=-1)  # [dQ dK dV]/s
    rows = packed.transpose(0, 1).reshape(u, b * t, 3 * hd)
    return torch.bmm(rows, w.transpose(0, 1).reshape(u, 3 * hd, d))  # (U, B·T, D)
