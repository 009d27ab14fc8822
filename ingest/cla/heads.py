"""Attention heads as CLA units (docs/method.md, "Token models").

A head layer is named `PATH:heads`, PATH the dotted path of an attention module. Its "output" is
the attention output before the output projection, viewed as (B, H, T, head_dim): one channel per
head, positions = the head's tokens × features. Every CLA sum over a unit's positions then runs
over the head's tokens and features, so the engine, the reference loop and the interventions
need no head-specific code: `ingest.hooks.scoped_hooks` calls `head_hooks` for such names.

Two readers, chosen by the module:

- `torch.nn.MultiheadAttention` (torchvision's ViT, open_clip's default block): its output
  projection is applied inside `F.multi_head_attention_forward`, not as a module call, so hooks
  run the module's own forward with an identity projection (its output is then the heads) and
  apply `out_proj` to the heads after;
- an attention module that *calls* its output projection as a submodule (`proj`, `out_proj`,
  `o_proj` or `c_proj`, an `nn.Linear`) and declares its head count (`num_heads`, `n_heads` or
  `heads`): open_clip's `Attention` and the qkv/proj attention of most ViT code. A forward-pre
  hook on the projection sees the concatenated heads.
"""

from __future__ import annotations

import weakref
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
        kind: "mha" (torch.nn.MultiheadAttention, identity projection) or "proj" (input of the projection).
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
        assert isinstance(attn, nn.MultiheadAttention)
        return _mha_hooks(reader, attn, fn)
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


def _mha_hooks(reader: HeadReader, attn: nn.MultiheadAttention, fn: Hook) -> list[Any]:
    """Read nn.MultiheadAttention's heads from its own forward, run with an identity output projection.

    One pair of hooks per module, whatever the number of head hooks on it: a forward-pre hook puts
    I and 0 in place of `out_proj`'s weight and bias, so the module's own forward (its fused
    kernel, masks and options included) returns the heads themselves, bit for bit (x·I + 0 = x in
    any float GEMM that keeps the input's precision; TF32 matmuls, off by default and during
    attribution, would round the heads to TF32 once);
    the forward hook, run before any other forward hook of the module, puts the projection back,
    passes the heads through each head hook in turn (a replacement feeds the next, as the
    projection reader's pre-hooks chain) and applies the projection. The returned handle removes
    this head hook, and with the last one the pair, restoring the projection also when a forward
    raised between the two hooks.
    """
    hooks = _MHA_HOOKS.get(attn)
    if hooks is None:
        hooks = _MHA_HOOKS[attn] = _MhaHooks(attn, reader)
    hooks.fns.append(fn)
    return [_FnHandle(hooks, fn)]


class _MhaHooks:
    """The identity-projection hooks of one nn.MultiheadAttention and the head hooks they serve."""

    def __init__(self, attn: nn.MultiheadAttention, reader: HeadReader) -> None:
        self.attn, self.reader = attn, reader
        self.fns: list[Hook] = []
        self.saved: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self.handles = [
            attn.register_forward_pre_hook(self.swap, prepend=True),
            attn.register_forward_hook(self.project, prepend=True),
        ]

    def swap(self, module: nn.Module, args: tuple) -> None:
        if self.saved is not None:  # swapped already: a forward raised, and the hooks are still on
            return
        proj = self.attn.out_proj
        w = proj.weight
        self.saved = (w, proj.bias)
        proj._parameters["weight"] = torch.eye(w.shape[1], dtype=w.dtype, device=w.device)  # type: ignore[assignment]
        proj._parameters["bias"] = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)  # type: ignore[assignment]

    def restore(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        assert self.saved is not None
        w, b = self.saved
        proj = self.attn.out_proj
        proj._parameters["weight"], proj._parameters["bias"] = w, b  # type: ignore[assignment]
        self.saved = None
        return w, b

    def project(self, module: nn.Module, args: tuple, output: Any) -> Any:
        w, b = self.restore()
        heads = _split(output[0] if isinstance(output, tuple) else output, self.reader)
        for fn in list(self.fns):
            new = fn(module, args, heads)
            heads = heads if new is None else new
        out = F.linear(_merge(heads, self.reader), w, b)
        return (out, *output[1:]) if isinstance(output, tuple) else out

    def remove(self, fn: Hook) -> None:
        self.fns.remove(fn)
        if self.fns:
            return
        if self.saved is not None:
            self.restore()
        for handle in self.handles:
            handle.remove()
        _MHA_HOOKS.pop(self.attn, None)


_MHA_HOOKS: weakref.WeakKeyDictionary[nn.Module, _MhaHooks] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class _FnHandle:
    """A hook handle: `remove` takes one head hook off an nn.MultiheadAttention (`_mha_hooks`)."""

    hooks: _MhaHooks
    fn: Hook

    def remove(self) -> None:
        self.hooks.remove(self.fn)
