"""Layer capture: one forward pass that records every named layer's output as an autograd leaf.

CLA (docs/method.md, "Cross-Layer Attribution") differentiates layer `L_{i+1}` with respect to layer `L_i` *as the input of the
modules between them*. A forward hook on each named layer therefore replaces its output by a
detached copy that requires grad (a leaf), so downstream modules are computed from the leaf and a
skip path that bypasses `L_i` contributes nothing to the derivative.

Hooks are scoped (`capture` is a context manager that removes them in `finally`), so a model never
keeps a stray hook. Layer names are dotted module paths, the strings the catalog stores.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from catalog.errors import CircuitsError
from ingest.cla.heads import is_head_layer, module_path, read_heads
from ingest.hooks import scoped_hooks

__all__ = [
    "CaptureError",
    "LayerCapture",
    "LayerOrderError",
    "UnknownLayer",
    "capture",
    "capture_layers",
    "channels_first",
    "check_layer_chain",
    "layer_widths",
    "resolve_layers",
]


class CaptureError(CircuitsError):
    """The named layers cannot be captured as CLA cuts of this model."""


class UnknownLayer(CaptureError):
    """A layer name is not a module of the model."""


class LayerOrderError(CaptureError):
    """A layer is not computed from the previous layer (wrong order, or not a cut)."""


def resolve_layers(model: nn.Module, layers: Sequence[str]) -> list[nn.Module]:
    """The modules named by `layers` (dotted paths as in `model.named_modules()`; a head layer
    `PATH:heads` names its attention module, `ingest.cla.heads`).

    Args:
        model: the network.
        layers: dotted module paths, in forward order.

    Returns:
        The modules, in the order given.

    Raises:
        UnknownLayer: a name is not a module of `model`; the message lists close or valid names.
        CaptureError: fewer than one layer, or a name given twice.
        HeadSpecError: a head layer names a module whose heads cannot be read.
    """
    if len(layers) == 0:
        raise CaptureError("no layers given: pass the dotted module names of the layers to capture")
    named = dict(model.named_modules())
    out = []
    seen: set[str] = set()
    for name in layers:
        if name in seen:
            raise CaptureError(f"layer {name!r} is listed twice: name each layer once, in forward order")
        seen.add(name)
        path = module_path(name)
        module = named.get(path) if path else None
        if module is None:
            raise UnknownLayer(f"unknown layer {name!r}: {_candidates(path, named)}")
        if is_head_layer(name):
            read_heads(model, name)  # HeadSpecError when the module's heads cannot be read
        out.append(module)
    return out


def _candidates(name: str, named: dict[str, nn.Module]) -> str:
    names = [n for n in named if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if close:
        return "did you mean " + ", ".join(close) + "?"
    top = [n for n in names if "." not in n]  # top-level children are the usual cut candidates
    shown = ", ".join(top[:30]) + (", …" if len(top) > 30 else "")
    return (
        f"valid top-level names: {shown} (nested modules use dotted paths, e.g. {top[0]}.…)"
        if top
        else ("the model has no submodules")
    )


@dataclass
class LayerCapture:
    """What one forward pass under `capture` recorded (reset by the next pass).

    Attributes:
        layers: the layer names, in forward order.
        leaves: per layer, the leaf that replaced its output (downstream is computed from it).
        outputs: per layer, the module's own output (still attached to the graph that produced it,
            which for layer i+1 starts at the leaf of layer i).
        calls: how many times each layer ran in the current pass.
    """

    layers: list[str]
    leaves: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget the previous pass."""
        self.leaves.clear()
        self.outputs.clear()
        self.calls.clear()

    def leaf_list(self) -> list[torch.Tensor]:
        """The leaves in layer order.

        Raises:
            CaptureError: a layer did not run in the last forward pass.
        """
        self._check_complete()
        return [self.leaves[n] for n in self.layers]

    def output_list(self) -> list[torch.Tensor]:
        """The modules' own outputs in layer order (see `outputs`)."""
        self._check_complete()
        return [self.outputs[n] for n in self.layers]

    def _check_complete(self) -> None:
        missing = [n for n in self.layers if n not in self.leaves]
        if missing:
            raise CaptureError(
                f"layer(s) {', '.join(missing)} did not run in the forward pass: "
                "name modules that the model's forward actually calls"
            )

    def _hook(self, name: str, module: nn.Module, args: tuple, output: object) -> torch.Tensor:
        count = self.calls.get(name, 0) + 1
        self.calls[name] = count
        if count > 1:
            raise CaptureError(
                f"layer {name!r} runs more than once in one forward pass (a shared module): "
                "name a module that runs once, e.g. its parent block"
            )
        if not isinstance(output, torch.Tensor):
            raise CaptureError(
                f"layer {name!r} returns {type(output).__name__}, not a tensor: name a module whose "
                "output is one activation tensor"
            )
        leaf = output.detach()
        if torch.is_grad_enabled() and leaf.is_floating_point():
            leaf.requires_grad_(True)
        self.outputs[name] = output
        self.leaves[name] = leaf
        return leaf  # replaces the output: downstream modules are computed from the leaf


@contextmanager
def capture(model: nn.Module, layers: Sequence[str]) -> Iterator[LayerCapture]:
    """Hooks that turn each named layer's output into a leaf, removed on exit.

    Under `torch.no_grad()` the leaves do not require grad (values only). Call `reset()` on the
    yielded object between forward passes.

    Args:
        model: the network; it is not modified beyond the hooks, which are always removed.
        layers: dotted module paths, in forward order.

    Yields:
        The `LayerCapture` filled by each forward pass.

    Raises:
        UnknownLayer: a name is not a module of `model`.
        CaptureError: a layer runs twice per pass or does not return a tensor (raised by forward).
    """
    resolve_layers(model, layers)  # UnknownLayer, with close names, before any hook
    cap = LayerCapture(list(layers))
    with scoped_hooks(model, {name: _bind(cap, name) for name in layers}):
        yield cap


def _bind(cap: LayerCapture, name: str):
    def hook(module: nn.Module, args: tuple, output: object) -> torch.Tensor:
        return cap._hook(name, module, args, output)

    return hook


def check_layer_chain(cap: LayerCapture) -> None:
    """Check that each layer's output is computed from the previous layer's leaf.

    Uses the autograd graph of a pass run with grad enabled: the output of layer i+1 must reach the
    leaf of layer i. Parameters need not require grad.

    Args:
        cap: a capture filled by a forward pass run with grad enabled.

    Raises:
        LayerOrderError: layer i+1 does not depend on layer i (wrong order, or not a cut).
    """
    outputs = cap.output_list()
    leaves = cap.leaf_list()
    for i in range(len(cap.layers) - 1):
        if not _reaches(outputs[i + 1], leaves[i]):
            a, b = cap.layers[i], cap.layers[i + 1]
            raise LayerOrderError(
                f"layer {b!r} is not computed from layer {a!r}: list layers in forward order, "
                "each one a cut of the network that the next is computed from"
            )


def _reaches(output: torch.Tensor, leaf: torch.Tensor) -> bool:
    """Whether `output`'s autograd graph reaches `leaf`'s AccumulateGrad node."""
    root = output.grad_fn
    if root is None:
        return False
    stack, seen = [root], {root}
    while stack:
        node = stack.pop()
        if getattr(node, "variable", None) is leaf:
            return True
        for nxt, _ in node.next_functions:
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


@dataclass(frozen=True)
class CapturedLayers:
    """One forward pass's captured layers (see `capture_layers`).

    Attributes:
        layers: the layer names, in forward order.
        leaves: per layer, its output as a leaf requiring grad, e.g. (B, C, H, W).
        outputs: per layer, the output attached to the graph that starts at the previous leaf.
    """

    layers: list[str]
    leaves: list[torch.Tensor]
    outputs: list[torch.Tensor]


def capture_layers(model: nn.Module, layers: Sequence[str], images: torch.Tensor) -> CapturedLayers:
    """Run one forward pass with grad and return every layer's output as a leaf.

    The model's parameters are left as they are (their gradients are never computed here, but the
    graph includes them if they require grad). Checks that each layer is computed from the
    previous one.

    Args:
        model: the network, on the device of `images`.
        layers: dotted module paths, in forward order.
        images: the input batch, e.g. (B, 3, H, W).

    Returns:
        The captured leaves and graph-attached outputs.

    Raises:
        UnknownLayer, LayerOrderError, CaptureError: see `capture` and `check_layer_chain`.
    """
    with capture(model, layers) as cap, torch.enable_grad():
        model(images)
        check_layer_chain(cap)
        return CapturedLayers(list(layers), cap.leaf_list(), cap.output_list())


def layer_widths(model: nn.Module, layers: Sequence[str], input_shape: Sequence[int]) -> list[int]:
    """The number of neurons (channels) of each layer, from one forward pass on zeros.

    Args:
        model: the network (eval mode recommended; it is not switched here).
        layers: dotted module paths.
        input_shape: the shape of one input without the batch dimension, e.g. (3, 224, 224).

    Returns:
        Per layer, its channel count (dim 1 of a (B, C, …) output; the last dim of a (B, T, D)
        token output).

    Raises:
        UnknownLayer, CaptureError: see `capture`.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros((1, *input_shape), device=device, dtype=dtype)
    with capture(model, layers) as cap, torch.no_grad():
        model(x)
        return [int(channels_first(t).shape[1]) for t in cap.leaf_list()]


def channels_first(t: torch.Tensor) -> torch.Tensor:
    """A layer output viewed as (B, C, P): channels, then all positions flattened.

    (B, C) → one position; (B, C, H, W) → H·W positions; (B, T, D) (tokens) → D channels over T.

    Raises:
        CaptureError: any other number of dimensions.
    """
    if t.ndim == 2:
        return t.unsqueeze(-1)  # (B, C, 1)
    if t.ndim == 3:
        return t.transpose(1, 2)  # (B, D, T)
    if t.ndim == 4:
        return t.flatten(2)  # (B, C, H*W)
    raise CaptureError(f"a layer output has shape {tuple(t.shape)}: expected (B, C), (B, T, D) or (B, C, H, W)")
