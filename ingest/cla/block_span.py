"""Which layer pairs span one standard pre-LN transformer block, read from the modules.

`ingest.cla.vit_block` computes their scores (docs/results.md, "Fast exact path for transformer blocks").

A block is x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)), as torchvision's `EncoderBlock`, open_clip's
`ResidualAttentionBlock` with batch-first `nn.MultiheadAttention`, and the qkv/proj blocks of most
ViT code write it (`norm1`, `attn` with `qkv`/`proj`/`num_heads`, `norm2`, `mlp` with two Linears
and one elementwise activation). Reading a block checks its structure only; whether it computes
what the structure says is checked on values and gradients by `ingest.cla.vit_block`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ingest.cla.heads import is_head_layer, module_path
from ingest.cla.token_mlp import ELEMENTWISE

__all__ = ["BlockParts", "NormInputs", "Span", "block_parts", "block_span", "block_spans", "record_norm_inputs"]

NormInputs = dict[int, torch.Tensor]  # id(LayerNorm) -> its input in this forward


@dataclass(frozen=True)
class BlockParts:
    """The modules of one pre-LN block."""

    ln1: nn.LayerNorm
    attn: nn.Module
    w_qkv: torch.Tensor
    b_qkv: torch.Tensor | None
    w_out: torch.Tensor
    b_out: torch.Tensor | None
    heads: int
    ln2: nn.LayerNorm
    fc1: nn.Linear
    act: nn.Module
    fc2: nn.Linear


def _identity(m: nn.Module | None) -> bool:
    return m is None or isinstance(m, nn.Identity | nn.Dropout)


def block_parts(block: nn.Module) -> BlockParts | None:
    """The block's parts when it is a pre-LN block this path knows, else None."""
    ln1 = next((getattr(block, n) for n in ("ln_1", "norm1") if hasattr(block, n)), None)
    ln2 = next((getattr(block, n) for n in ("ln_2", "norm2") if hasattr(block, n)), None)
    attn = next((getattr(block, n) for n in ("self_attention", "attn") if hasattr(block, n)), None)
    mlp = getattr(block, "mlp", None)
    if not (isinstance(ln1, nn.LayerNorm) and isinstance(ln2, nn.LayerNorm) and attn is not None and mlp is not None):
        return None
    if any(not _identity(getattr(block, n, None)) for n in ("ls_1", "ls_2", "ls1", "ls2", "ln_attn", "drop_path1")):
        return None
    if tuple(ln1.normalized_shape) != (ln1.normalized_shape[-1],) or len(ln2.normalized_shape) != 1:
        return None
    out: nn.Module | None
    w_qkv: torch.Tensor
    if isinstance(attn, nn.MultiheadAttention):
        if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn or not attn.batch_first:
            return None
        w_qkv, b_qkv, out, heads = attn.in_proj_weight, attn.in_proj_bias, attn.out_proj, attn.num_heads
    else:
        qkv, out, heads = getattr(attn, "qkv", None), getattr(attn, "proj", None), getattr(attn, "num_heads", None)
        if not (isinstance(qkv, nn.Linear) and isinstance(out, nn.Linear) and isinstance(heads, int)):
            return None
        w_qkv, b_qkv = qkv.weight, qkv.bias
    assert isinstance(out, nn.Linear)
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    acts = [m for m in mlp.modules() if type(m).__name__ in ELEMENTWISE]
    if len(linears) != 2 or len(acts) != 1 or w_qkv.shape[0] != 3 * w_qkv.shape[1]:
        return None
    return BlockParts(
        ln1, attn, w_qkv.detach(), _det(b_qkv), out.weight.detach(), _det(out.bias), int(heads), ln2,
        linears[0], acts[0], linears[1],
    )  # fmt: skip


def _det(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach()


def _owner(model: nn.Module, name: str) -> tuple[str, BlockParts] | None:
    """(block path, parts) of the block whose MLP activation or attention `name` names."""
    path = module_path(name)
    target = model.get_submodule(path)
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        found = block_parts(model.get_submodule(prefix))
        if found is not None:
            mine = found.attn if is_head_layer(name) else found.act
            return (prefix, found) if mine is target else None
    return None


@dataclass(frozen=True)
class Span:
    """A pair this path covers: its kind ("mlp", "heads", "to_heads") and the two blocks' parts."""

    kind: str
    up: BlockParts
    down: BlockParts


def block_span(model: nn.Module, up_name: str, down_name: str) -> Span | None:
    """The span between two layers when it is one of the covered kinds (values not yet checked)."""
    return _span(up_name, down_name, _owner(model, up_name), _owner(model, down_name))


def block_spans(model: nn.Module, layers: Sequence[str]) -> list[Span | None]:
    """`block_span` of each adjacent pair, each layer's block read once."""
    owners = [_owner(model, name) for name in layers]
    return [_span(*pair) for pair in zip(layers, layers[1:], owners, owners[1:])]


def _span(
    up_name: str, down_name: str, up: tuple[str, BlockParts] | None, down: tuple[str, BlockParts] | None
) -> Span | None:
    if up is None or down is None:
        return None
    same = up[0] == down[0]
    if is_head_layer(up_name) and not is_head_layer(down_name) and same:
        return Span("heads", up[1], down[1])
    if not is_head_layer(up_name) and not same:
        return Span("to_heads" if is_head_layer(down_name) else "mlp", up[1], down[1])
    return None


@contextmanager
def record_norm_inputs(model: nn.Module, *, active: bool = True) -> Iterator[NormInputs]:
    """During a forward pass, the input of every LayerNorm (by module id); hooks removed on exit
    (nothing is recorded unless `active`)."""
    seen: NormInputs = {}

    def hook(module, args):
        if args and isinstance(args[0], torch.Tensor):
            seen[id(module)] = args[0].detach()

    modules = model.modules() if active else []
    handles = [m.register_forward_pre_hook(hook) for m in modules if isinstance(m, nn.LayerNorm)]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()
