"""The zoo's data types: how to build, load and feed a model (`ModelSpec`), a loaded model
(`LoadedModel`), and the zoo's errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from catalog.errors import CircuitsError

__all__ = [
    "FACTORY_SYNTAX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LoadedModel",
    "ModelLoadError",
    "ModelSpec",
    "RandomInitWarning",
    "UnknownModel",
    "ZooError",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FACTORY_SYNTAX = "path/to/file.py:factory or package.module:factory"


class ZooError(CircuitsError):
    """A model cannot be built or loaded as asked."""


class UnknownModel(ZooError):
    """The model name is neither in the zoo nor a user factory."""


class ModelLoadError(ZooError):
    """A user model factory cannot be imported or does not build a module."""


class RandomInitWarning(UserWarning):
    """A model runs with random weights because no weights were given or found."""


@dataclass(frozen=True)
class ModelSpec:
    """How to build, load and feed one model.

    Attributes:
        name: zoo name (or the user factory string).
        architecture: what the network is, for the catalog's `model` row.
        build: returns a randomly initialised module.
        layers: default CLA layers, dotted module paths in forward order (empty for user models).
        input_size: square input side in pixels.
        mean: per-channel normalisation mean (RGB, images scaled to [0, 1]).
        std: per-channel normalisation std.
        labels: output class names by logit index, where known.
        default_weights: a bundled weights file, used when present and none is given.
        cache_names: files looked for in library caches (never downloaded): bare names in torch
            hub's `checkpoints/`, `hf:`-prefixed glob patterns in the Hugging Face hub cache.
        convert_state_dict: adapts a foreign state dict's keys (e.g. strip `visual.`) before loading.
    """

    name: str
    architecture: str
    build: Callable[[], nn.Module]
    layers: tuple[str, ...]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    labels: tuple[str, ...] | None = None
    default_weights: Path | None = None
    cache_names: tuple[str, ...] = ()
    convert_state_dict: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = field(default=None)


@dataclass(frozen=True)
class LoadedModel:
    """A built model with its weights, ready for CLA.

    Attributes:
        spec: the model's spec.
        module: the network, in eval mode on the requested device.
        layers: the CLA layers to use (given or the spec's default).
        weights_sha256: `weights_sha256(module)`: the identity of the weights.
        weights_source: "file:PATH", "bundled:NAME", "cache:PATH" or "random-init".
    """

    spec: ModelSpec
    module: nn.Module
    layers: tuple[str, ...]
    weights_sha256: str
    weights_source: str
