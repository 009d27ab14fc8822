"""Class-anchored circuits (docs/method.md, "Circuit search", anchoring): a circuit whose last layer
is fixed to one class logit, so it ends at its class, as the EfficientNet walkthrough builds them.

* `plan_anchor(model, layers, anchor, class_names)` checks, before anything is computed or
  written, that the last CLA layer is the model's class layer (its output is the model's output,
  one value per class) and resolves the class (a name or a logit index).
* `anchor_circuit(cat, run_id, k, plan)` stores the anchored circuit of a stored run
  (`ingest.refinement.refine(fixed=...)`).
* `label_class_layer(cat, run_id, class_names)` writes the class names as the labels of the class
  layer's neurons, so every reader shows `_fc:285 Egyptian cat` instead of `_fc:285`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from catalog import store
from catalog.engine import Catalog
from catalog.errors import CircuitsError

__all__ = ["AnchorError", "AnchorPlan", "anchor_circuit", "label_class_layer", "output_module", "plan_anchor"]


class AnchorError(CircuitsError):
    """--anchor cannot be used as given (unknown class, no class layer, class layer not last)."""


@dataclass(frozen=True)
class AnchorPlan:
    """Which logit the circuit is anchored on."""

    layer: str  # the class layer (last CLA layer)
    index: int  # the logit
    name: str | None  # its class name, when known
    width: int  # number of classes

    def __str__(self) -> str:
        return f"{self.layer}:{self.index}" + (f" ({self.name})" if self.name else "")


def output_module(model: nn.Module, example: torch.Tensor) -> tuple[str | None, torch.Tensor]:
    """The dotted path of the innermost module whose output is the model's output (or None), and
    that output (one forward pass of `example`)."""
    outputs: dict[str, object] = {}  # the objects themselves: ids of freed tensors are reused
    handles = [
        m.register_forward_hook(lambda _m, _i, o, name=name: outputs.__setitem__(name, o))
        for name, m in model.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            out = model(example)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(out, torch.Tensor):
        return None, out
    same = [name for name, o in outputs.items() if o is out]
    return (max(same, key=lambda n: n.count(".")) if same else None), out


def _resolve_class(anchor: str, names: Sequence[str] | None, width: int) -> tuple[int, str | None]:
    text = anchor.strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < width:
            raise AnchorError(f"`anchor=` {text}: the class layer has {width} logits, use 0…{width - 1}")
        return index, (names[index] if names else None)
    if not names:
        raise AnchorError(
            f"`anchor=` {text!r}: this model has no class names; give a logit index, or `class_names=` "
            "(the names by logit index)"
        )
    if text in names:
        return list(names).index(text), text
    folded = [n for n in names if n.lower() == text.lower()]
    if len(folded) == 1:
        return list(names).index(folded[0]), folded[0]
    close = difflib.get_close_matches(text, list(names), n=3) or [n for n in names if text.lower() in n.lower()][:3]
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise AnchorError(f"`anchor=` {text!r} is not one of the model's {len(names)} class names{hint}")


def plan_anchor(
    model: nn.Module, layers: Sequence[str], anchor: str, class_names: Sequence[str] | None, example: torch.Tensor
) -> AnchorPlan:
    """Check that `layers` ends at the model's class layer and resolve the anchor class.

    Args:
        model: the network (any weights: only shapes are read).
        layers: the CLA layers, forward order.
        anchor: a class name or a logit index.
        class_names: the names by logit index (the model's spec or `--classes`), if any.
        example: one input batch of the model's input shape.

    Raises:
        AnchorError: no class layer (the model's output is not one value per class), the class
            layer is not the last of `layers`, class names that do not match the logits, or an
            unknown class.
    """
    path, out = output_module(model, example)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise AnchorError(
            f"`anchor=` needs a model whose output is class logits (B, classes); this one returns {shape}"
        )
    width = int(out.shape[1])
    if path is None:
        raise AnchorError("`anchor=` needs a class layer: no single module of this model computes its logits")
    if not layers or layers[-1] != path:
        raise AnchorError(
            f"`anchor=` fixes the class layer, which must be the last of `layers=`: add {path} "
            f"(this model's logits) at the end, e.g. `layers=` {','.join([*list(layers)[-2:], path])}"
        )
    if class_names is not None and len(class_names) != width:
        raise AnchorError(f"{len(class_names)} class names for {width} logits: give one name per logit")
    index, name = _resolve_class(anchor, class_names, width)
    return AnchorPlan(path, index, name, width)


def anchor_circuit(cat: Catalog, run_id: int, k, plan: AnchorPlan):
    """Store the circuit of `run_id` anchored on `plan`'s logit; returns (circuit id, Circuit)."""
    from ingest.refinement import refine

    return refine(cat, run_id, k, fixed={plan.layer: [plan.index]})


def label_class_layer(cat: Catalog, run_id: int, class_names: Sequence[str]) -> int:
    """Label the run's last layer's neurons with the class names when it has one neuron per class.

    Returns:
        The number of neurons labelled (0 when the last layer is not the class layer).
    """
    from ingest.writer import label_class_layer as label_layer

    with cat.writing() as s:
        run = store.read_run(s, run_id)
        layer, width = run.layer_names[-1], run.widths[-1]
        if width != len(class_names):
            return 0
        return label_layer(s, run.model_id, layer, class_names)
