"""Exact weight edits for transformer units (docs/method.md, "Interventions"; "Token models").

Hooks zero a unit; these edits make a plain model compute the same:

* an attention head `PATH:heads` (h): the head's slice of the output projection, its input
  columns [h·head_dim, (h+1)·head_dim) — the projection then reads a zero from the head, which is
  what the hook feeds it;
* an MLP neuron f of an activation inside an MLP (`fc1 → act → [dropout] → fc2`, registered in
  that order): fc1's row f and bias f (the pre-activation is then exactly 0, and GELU(0) = ReLU(0)
  = 0) and fc2's input column f.

`token_edits` returns None for any other module, so the graph-reading planner
(`ingest.edit.bake_plan`) handles it as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from catalog.mask_file import MaskError
from ingest.cla.heads import HeadSpecError, is_head_layer, module_path, read_heads
from ingest.edit.bake_edits import ZERO_KEEPING_MODULES, Edit, NotBakeable

__all__ = ["token_edits"]

_ACTIVATIONS = (nn.GELU, nn.ReLU, nn.SiLU, nn.ReLU6)


def token_edits(model: nn.Module, path: str, channels: Sequence[int], width: int) -> list[Edit] | None:
    """The edits that zero `channels` of a head layer or a transformer MLP activation, else None.

    Raises:
        NotBakeable: a head layer whose module's heads cannot be read.
        MaskError: the unit count differs from the mask's width.
    """
    if is_head_layer(path):
        try:
            reader = read_heads(model, path)
        except HeadSpecError as exc:
            raise NotBakeable(f"cannot bake {path}: {exc}") from None
        if reader.num_heads != width:
            raise MaskError(f"{path} has {reader.num_heads} heads but the mask was made for a width of {width}")
        proj = _param_path(model, reader.proj) + ".weight"
        hd = reader.head_dim
        return [Edit(proj, 1, col) for h in channels for col in range(h * hd, (h + 1) * hd)]
    module = model.get_submodule(module_path(path))
    if not isinstance(module, _ACTIVATIONS):
        return None
    parent_path, _, _ = path.rpartition(".")
    parent = model.get_submodule(parent_path)
    children = list(parent.named_children())
    names = [n for n, _ in children]
    i = next(k for k, (_, m) in enumerate(children) if m is module)
    before = [m for _, m in children[:i]]
    after = children[i + 1 :]
    fc1 = before[-1] if before and isinstance(before[-1], nn.Linear) else None
    rest = [(n, m) for n, m in after if not isinstance(m, ZERO_KEEPING_MODULES)]
    fc2 = rest[0] if rest and isinstance(rest[0][1], nn.Linear) else None
    if fc1 is None or fc2 is None:
        return None
    if fc1.out_features != width:
        raise MaskError(f"{path} has {fc1.out_features} neurons but the mask was made for a width of {width}")
    fc1_path = f"{parent_path}.{names[i - 1]}"
    fc2_path = f"{parent_path}.{fc2[0]}"
    edits = [Edit(f"{fc1_path}.weight", 0, f) for f in channels]
    if fc1.bias is not None:
        edits += [Edit(f"{fc1_path}.bias", 0, f) for f in channels]
    return edits + [Edit(f"{fc2_path}.weight", 1, f) for f in channels]


def _param_path(model: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)
