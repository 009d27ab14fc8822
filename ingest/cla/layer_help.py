"""Candidate CLA layers of a model, for `circuits ingest MODEL --layers help` and `circuits models`.

Transformers list, per block, the attention heads (`PATH:heads`, `ingest.cla.heads`) and the MLP
activation, in module order (forward order in torchvision's, open_clip's and most ViT code).
Models without either list their top two levels of modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ingest.cla.heads import HEADS_SUFFIX, HeadSpecError, read_heads

__all__ = ["CandidateLayer", "candidate_layers"]

_ACTIVATIONS = (nn.GELU, nn.ReLU, nn.SiLU, nn.Mish, nn.ReLU6)


@dataclass(frozen=True)
class CandidateLayer:
    """One layer name to pass to `--layers`, what it is, and its units."""

    name: str
    kind: str  # "attention heads", "mlp activation" or "module"
    units: str


def _is_activation(module: nn.Module) -> bool:
    return isinstance(module, _ACTIVATIONS) or type(module).__name__ in ("QuickGELU", "GELUTanh")


def candidate_layers(model: nn.Module) -> list[CandidateLayer]:
    """The model's attention heads and MLP activations in module order (else its top modules)."""
    rows: list[CandidateLayer] = []
    named = dict(model.named_modules())
    for name, module in named.items():
        if not name:
            continue
        try:
            reader = read_heads(model, name + HEADS_SUFFIX)
        except HeadSpecError:
            reader = None
        if reader is not None:
            rows.append(
                CandidateLayer(name + HEADS_SUFFIX, "attention heads", f"{reader.num_heads} heads × {reader.head_dim}")
            )
            continue
        parent_name, _, _ = name.rpartition(".")
        if _is_activation(module) and "mlp" in parent_name.split(".")[-1].lower():
            width = _width_before(named.get(parent_name), module)
            rows.append(CandidateLayer(name, "mlp activation", f"{width} neurons" if width else "neurons"))
    if rows:
        return rows
    return [
        CandidateLayer(name, "module", type(module).__name__)
        for name, module in named.items()
        if name and name.count(".") <= 1
    ]


def _width_before(parent: nn.Module | None, act: nn.Module) -> int | None:
    """out_features of the last Linear registered before `act` in its parent (the MLP's fc1)."""
    width = None
    for child in parent.children() if parent is not None else ():
        if child is act:
            return width
        if isinstance(child, nn.Linear):
            width = child.out_features
    return None
