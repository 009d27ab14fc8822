"""Attention heads as CLA units (docs/method.md, "Token models").

A head layer is named `PATH:heads`, PATH the dotted path of an attention module. Its "output" is
the attention output before the output projection, viewed as (B, H, T, head_dim): one channel per
head, positions = the head's tokens × features. Every CLA sum over a unit's positions then runs
over the head's tokens and features, so the engine, the reference loop and the interventions
need no head-specific code: `ingest.hooks.scoped_hooks` calls `head_hooks` for such names.

Two readers, chosen by the module:

- `torch.nn.MultiheadAttention` (torchvision's ViT, open_clip's default block): its output
  projection is applied inside `F.multi_head_attention_forward`, not as a module call, so a
  forward hook recomputes the heads from the module's inputs, checks the recomputation against
  the module's own output, and returns `out_proj(heads)`;
- an attention module that *calls* its output projection as a submodule (`proj`, `out_proj`,
  `o_proj` or `c_proj`, an `nn.Linear`) and declares its head count (`num_heads`, `n_heads` or
  `heads`): open_clip's `Attention` and the qkv/proj attention of most ViT code. A forward-pre
  hook on the projection sees the concatenated heads.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from catalog.errors import CircuitsError

__all__ = [
    "HEADS_SUFFIX",
    "HeadReader",
    "HeadSpecError",
    "head_hooks",
    "is_head_layer",
    "module_path",
    "read_heads",
]

HEADS_SUFFIX = ":heads"
_PROJ_NAMES = ("proj", "out_proj", "o_proj", "c_proj")
_HEAD_COUNT_NAMES = ("num_heads", "n_heads", "heads", "num_attention_heads")
_DECLARE = (
    "declare the head count as an int attribute `num_heads` and call the output projection as an "
    "nn.Linear submodule named `proj` or `out_proj` (or use torch.nn.MultiheadAttention)"
)
_RECOMPUTE_RTOL = 1e-3  # the MHA reader's recomputed output must match the module's own to this

Hook = Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor | None]


class HeadSpecError(CircuitsError):
    """A `:heads` layer names a module whose attention heads cannot be read."""


def is_head_layer(name: str) -> bool:
    """Whether a layer name is a head layer (`PATH:heads`)."""
    return name.endswith(HEADS_SUFFIX)


def module_path(name: str) -> str:
    """The module path of a layer name (`PATH:heads` → `PATH`; other names as they are)."""
    return name[: -len(HEADS_SUFFIX)] if is_head_layer(name) else name


@dataclass(frozen=True)
class HeadReader:
    """How to read one attention module's heads.

    Attributes:
        kind: "mha" (torch.nn.MultiheadAttention, recomputed) or "proj" (input of the projection).
        num_heads: H.
        head_dim: features per head (the output projection's input width / H).
        proj: the output projection; head h is its input columns [h·head_dim, (h+1)·head_dim).
        proj_path: the projection's path relative to the attention module ("out_proj", "proj", …).
        batch_first: whether the projection's input is (B, T, D) (else (T, B, D)).
    """

    kind: str
    num_heads: int
    head_dim: int
    proj: nn.Linear
    proj_path: str
    batch_first: bool


def read_heads(model: nn.Module, name: str) -> HeadReader:
    """The reader of the attention module a `PATH:heads` layer names.

    Raises:
        HeadSpecError: the module is not attention, or its heads cannot be read (the message says
            what to declare).
        AttributeError: PATH names no module (callers check names first, `ingest.cla.capture`).
    """
    path = module_path(name)
    module = model.get_submodule(path)
    kind = type(module).__name__
    if isinstance(module, nn.MultiheadAttention):
        if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
            raise HeadSpecError(
                f"cannot read the heads of {path} ({kind}): separate q/k/v projections, bias_k/bias_v and "
                "add_zero_attn are not supported; name a MultiheadAttention without them"
            )
        h = int(module.num_heads)
        return HeadReader("mha", h, int(module.head_dim), module.out_proj, "out_proj", bool(module.batch_first))
    proj_name = next((p for p in _PROJ_NAMES if isinstance(getattr(module, p, None), nn.Linear)), None)
    count = next((getattr(module, c) for c in _HEAD_COUNT_NAMES if isinstance(getattr(module, c, None), int)), None)
    if proj_name is None or count is None:
        if not _looks_like_attention(module):
            raise HeadSpecError(
                f"{path} ({kind}) is not an attention module: `{HEADS_SUFFIX}` names the heads of an attention "
                "module (nn.MultiheadAttention, or one with a qkv and an output projection)"
            )
        missing = "a head count" if count is None else "an output projection it calls as a submodule"
        raise HeadSpecError(f"cannot read the heads of {path} ({kind}): it has no {missing}; {_DECLARE}")
    proj = getattr(module, proj_name)
    if count < 1 or proj.in_features % count:
        raise HeadSpecError(
            f"cannot read the heads of {path} ({kind}): {proj_name} takes {proj.in_features} features, "
            f"not a multiple of {count} heads; {_DECLARE}"
        )
    batch_first = bool(getattr(module, "batch_first", True))
    return HeadReader("proj", int(count), proj.in_features // count, proj, proj_name, batch_first)


def _looks_like_attention(module: nn.Module) -> bool:
    names = {n for n, _ in module.named_children()} | set(vars(module))
    return (
        "attn" in type(module).__name__.lower()
        or "attention" in type(module).__name__.lower()
        or bool(names & {"qkv", "q_proj", "k_proj", "v_proj", "in_proj_weight", "to_qkv", "query", "key", "value"})
    )


def head_hooks(model: nn.Module, name: str, fn: Hook) -> list[Any]:
    """Attach `fn` to a head layer; returns the hook handles (the caller removes them).

    `fn(module, args, heads)` sees the heads as (B, H, T, head_dim) and may return a replacement
    of the same shape, which then feeds the output projection (as a forward hook's return
    replaces a module's output).

    Raises:
        HeadSpecError: see `read_heads`.
    """
    reader = read_heads(model, name)
    attn = model.get_submodule(module_path(name))
    if reader.kind == "mha":
        return [attn.register_forward_hook(_mha_hook(reader, fn, name), with_kwargs=True)]
    return [reader.proj.register_forward_pre_hook(_proj_hook(reader, attn, fn, name))]


def _split(x: torch.Tensor, reader: HeadReader) -> torch.Tensor:
    """Projection input (B, T, D) (or (T, B, D)) → heads (B, H, T, head_dim)."""
    if not reader.batch_first:
        x = x.transpose(0, 1)
    return x.unflatten(-1, (reader.num_heads, reader.head_dim)).transpose(1, 2)  # (B, H, T, hd)


def _merge(z: torch.Tensor, reader: HeadReader) -> torch.Tensor:
    """Heads (B, H, T, head_dim) → projection input (B, T, D) (or (T, B, D))."""
    x = z.transpose(1, 2).flatten(2)  # (B, T, D)
    return x if reader.batch_first else x.transpose(0, 1)


def _proj_hook(reader: HeadReader, attn: nn.Module, fn: Hook, name: str):
    def hook(module: nn.Module, args: tuple) -> tuple | None:
        x = args[0]
        if x.ndim != 3:
            raise HeadSpecError(
                f"{name}: the output projection's input has shape {tuple(x.shape)}, not (B, T, D); {_DECLARE}"
            )
        new = fn(attn, args, _split(x, reader))
        return None if new is None else (_merge(new, reader), *args[1:])

    return hook


_MHA_SIGNATURE = inspect.signature(nn.MultiheadAttention.forward)


def _mha_hook(reader: HeadReader, fn: Hook, name: str):
    def hook(module: nn.MultiheadAttention, args: tuple, kwargs: dict, output: Any) -> Any:
        bound = _MHA_SIGNATURE.bind(module, *args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        z = _mha_heads(module, a["query"], a["key"], a["value"], a["attn_mask"], a["key_padding_mask"])
        proj = module.out_proj
        out = F.linear(_merge(z, reader), proj.weight, proj.bias)
        ref = (output[0] if isinstance(output, tuple) else output).detach()
        err = (out.detach() - ref).abs().max() / ref.abs().max().clamp_min(1e-12)
        if err > _RECOMPUTE_RTOL:
            raise HeadSpecError(
                f"{name}: recomputing the heads of {type(module).__name__} does not reproduce its output "
                f"(rel. error {float(err):.2g}; masks or options this reader does not know); {_DECLARE}"
            )
        new = fn(module, args, z)
        if new is None:
            return None
        # The module's own output plus the projection of the change: unchanged heads keep its bits
        # (a capture's leaf equals z, so the output is the module's), and the gradient reaches
        # `new` through the projection only, as it would through out_proj(new).
        delta = _merge(new, reader) - _merge(z, reader).detach()
        out = ref + F.linear(delta, proj.weight)
        return (out, *output[1:]) if isinstance(output, tuple) else out

    return hook


def _mha_heads(
    m: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
) -> torch.Tensor:
    """The heads of nn.MultiheadAttention before its output projection, (B, H, T, head_dim)."""
    if not m.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    w_q, w_k, w_v = m.in_proj_weight.chunk(3)
    b_q, b_k, b_v = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None else (None, None, None)
    h, hd = m.num_heads, m.head_dim

    def heads(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, w, b).unflatten(-1, (h, hd)).transpose(1, 2)  # (B, H, T, hd)

    q, k, v = heads(query, w_q, b_q), heads(key, w_k, b_k), heads(value, w_v, b_v)
    logits = q @ k.transpose(-2, -1) / math.sqrt(hd)  # (B, H, T, S)
    if attn_mask is not None:
        mask = attn_mask if attn_mask.ndim == 2 else attn_mask.view(q.shape[0], h, *attn_mask.shape[-2:])
        logits = logits.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
    if key_padding_mask is not None:
        pad = key_padding_mask[:, None, None, :]
        logits = logits.masked_fill(pad, float("-inf")) if pad.dtype == torch.bool else logits + pad
    return logits.softmax(dim=-1) @ v  # (B, H, T, hd)
