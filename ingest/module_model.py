"""A model the caller holds: any `torch.nn.Module`, as the pipeline and ablation take it.

`IngestConfig(model=module, layers=[...], preprocessing=...)` and `ablate(..., model=module)` take
the network object itself; zoo names and `path/file.py:factory` strings stay for the command line.
A module's identity in the catalog is its architecture name (the class's name) and the sha256 of
its weights (`ingest.zoo.weights_sha256`); the catalog never stores or runs its code, so a later
`ablate` of its circuits needs the module passed again (its weights are checked against the
stored sha256).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeGuard

from catalog.errors import CircuitsError

if TYPE_CHECKING:
    from torch import nn

    from ingest.zoo import LoadedModel, Preprocessing

__all__ = ["ModuleError", "architecture_name", "is_module", "loaded_module"]


class ModuleError(CircuitsError):
    """A model object passed without what the pipeline needs to use it."""


def is_module(model: object) -> TypeGuard[nn.Module]:
    """Whether `model` is a `torch.nn.Module` (without importing torch when it is a string)."""
    if isinstance(model, str | type(None)):
        return False
    from torch import nn

    return isinstance(model, nn.Module)


def architecture_name(module: nn.Module) -> str:
    """The name a module is catalogued under: its class's qualified name (e.g. "TinyNet")."""
    return type(module).__qualname__


def loaded_module(
    module: nn.Module,
    *,
    layers: Sequence[str] | None,
    preprocessing: Preprocessing | None = None,
    labels: Sequence[str] | None = None,
    device: str | None = None,
) -> LoadedModel:
    """Wrap a module the caller holds as a `LoadedModel` (no loading, no code from anywhere).

    The module is put in eval mode (CLA is defined on the eval network) and, when `device` is
    given, moved there; it is otherwise left where it is.

    Args:
        module: the network.
        layers: its CLA layers, dotted module paths in forward order (required).
        preprocessing: how images become its input (None: none, [0, 1] RGB at their own size).
        labels: output class names by logit index, where known.
        device: where to move it (None: leave it).

    Raises:
        ModuleError: no layers given.
        UnknownLayer: a layer is not a submodule of `module`.
    """
    from ingest.cla.capture import resolve_layers
    from ingest.hooks import resolve_device
    from ingest.zoo import LoadedModel, ModelSpec, Preprocessing, weights_sha256

    if not layers:
        raise ModuleError(
            "a model object needs its CLA layers: pass `layers=` (dotted module names in forward order, "
            "e.g. [name for name, _ in module.named_children()])"
        )
    chosen = tuple(layers)
    resolve_layers(module, chosen)  # UnknownLayer (close names listed) before any compute
    name = architecture_name(module)
    spec = ModelSpec(
        name=name,
        architecture=f"{type(module).__module__}.{type(module).__qualname__}",
        build=lambda: module,
        layers=chosen,
        labels=None if labels is None else tuple(labels),
        preprocessing=preprocessing or Preprocessing(),
    )
    if device is not None:
        module = module.to(resolve_device(device))
    module = module.eval()
    return LoadedModel(
        spec=spec, module=module, layers=chosen, weights_sha256=weights_sha256(module), weights_source="object"
    )
