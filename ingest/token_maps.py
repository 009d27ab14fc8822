"""Patch-grid pictures of token units, for thumbnails (docs/method.md, "Token models").

A ViT unit has no receptive field to crop: its picture is the whole example image with a heat-map
on the patch grid.

- **where it fires**: an MLP neuron's activation on each patch token; a head's output norm
  (over its `head_dim` features) on each patch token (`unit_grid`);
- **attention from CLS** (heads): the head's attention weights from the first token (the class
  token) to each patch token; a model without a prefix token gets the mean over query tokens (the
  pooled token's view) (`attention_from_cls`).

The attention is recomputed from the attention module's inputs: `torch.nn.MultiheadAttention`
and modules that hold `in_proj_weight` and `num_heads` (open_clip), and qkv/proj attention that
calls a `qkv` linear (most ViT code). Another attention module gets no attention map (its
"where it fires" map is still drawn).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ingest.cla.heads import is_head_layer, module_path
from ingest.cla.tokens import prefix_tokens

__all__ = ["attention_from_cls", "is_token_output", "unit_grid"]


def is_token_output(name: str, shape: Sequence[int]) -> bool:
    """Whether a layer output of `shape` is a token layer's (B, T, D) or a head layer's (B, H, T, hd)."""
    return (is_head_layer(name) and len(shape) == 4) or (len(shape) == 3 and not is_head_layer(name))


def unit_grid(name: str, act: torch.Tensor, channel: int) -> np.ndarray | None:
    """One image's unit map on the patch grid (g, g), float32; None when the tokens are no square grid.

    Args:
        act: one image's layer output: (T, D) for a token layer, (H, T, hd) for a head layer.
    """
    if is_head_layer(name):
        per_token = torch.linalg.vector_norm(act[channel].float(), dim=-1)  # (T,)
    else:
        per_token = act[:, channel].float()
    return _grid(per_token)


def _grid(per_token: torch.Tensor) -> np.ndarray | None:
    n_tok = int(per_token.shape[0])
    prefix = prefix_tokens(n_tok)
    g = math.isqrt(n_tok - prefix)
    if g == 0:
        return None
    return per_token[prefix:].reshape(g, g).detach().cpu().numpy().astype(np.float32)


@torch.no_grad()
def attention_from_cls(model: nn.Module, layers: Sequence[str], x: torch.Tensor) -> dict[str, np.ndarray | None]:
    """Per head layer, each image's attention from the class token to the patches, (N, H, g, g)
    (None for an attention module this cannot read, or tokens that are no square grid)."""
    heads = [name for name in layers if is_head_layer(name)]
    seen: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in heads:
            hook = _attention_hook(model.get_submodule(module_path(name)), name, seen)
            if hook is not None:
                handles.append(hook)
        if handles:
            model(x)
    finally:
        for h in handles:
            h.remove()
    out: dict[str, np.ndarray | None] = {}
    for name in heads:
        att = seen.get(name)  # (N, H, T, T)
        if att is None:
            out[name] = None
            continue
        n_tok = att.shape[-1]
        prefix = prefix_tokens(n_tok)
        g = math.isqrt(n_tok - prefix)
        row = att[:, :, 0] if prefix else att.mean(dim=2)  # (N, H, T): from CLS, or the pooled view
        out[name] = None if g == 0 else row[..., prefix:].reshape(*row.shape[:2], g, g).float().cpu().numpy()
    return out


def _attention_hook(module: nn.Module, name: str, seen: dict[str, torch.Tensor]):
    n_heads = getattr(module, "num_heads", None)
    if not isinstance(n_heads, int):
        return None
    qkv = getattr(module, "qkv", None)
    if isinstance(qkv, nn.Linear):  # qkv/proj attention: the qkv linear's output holds q and k

        def from_qkv(mod, args, out):
            b, t, three_d = out.shape
            q, k, _ = out.reshape(b, t, 3, n_heads, three_d // (3 * n_heads)).permute(2, 0, 3, 1, 4)
            seen[name] = _softmax(q, k)

        return qkv.register_forward_hook(from_qkv)
    w = getattr(module, "in_proj_weight", None)
    if isinstance(w, torch.Tensor) or isinstance(getattr(module, "q_proj_weight", None), torch.Tensor):

        def from_inputs(mod, args, kwargs):
            query = args[0] if args else kwargs["query"]
            key = args[1] if len(args) > 1 else kwargs.get("key", query)
            if not getattr(mod, "batch_first", True):
                query, key = query.transpose(0, 1), key.transpose(0, 1)
            e = query.shape[-1]
            b_in = getattr(mod, "in_proj_bias", None)
            if isinstance(w, torch.Tensor):
                wq, wk = w[:e], w[e : 2 * e]
            else:
                wq, wk = mod.q_proj_weight, mod.k_proj_weight
            bq, bk = (None, None) if b_in is None else (b_in[:e], b_in[e : 2 * e])
            q, k = F.linear(query, wq, bq), F.linear(key, wk, bk)
            b, t, _ = q.shape
            hd = q.shape[-1] // n_heads
            q = q.reshape(b, t, n_heads, hd).transpose(1, 2)
            k = k.reshape(b, k.shape[1], n_heads, hd).transpose(1, 2)
            seen[name] = _softmax(q, k)

        return module.register_forward_pre_hook(from_inputs, with_kwargs=True)
    return None


def _softmax(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) over keys, (B, H, T, T)."""
    return (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).softmax(-1).detach()
