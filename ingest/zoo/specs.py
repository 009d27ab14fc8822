"""The zoo's data types: how to build, load and feed a model (`ModelSpec`), a loaded model
(`LoadedModel`), and the zoo's errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ingest.zoo.errors import ModelLoadError, PreprocessingError, UnknownModel, ZooError  # re-exported
from ingest.zoo.preprocessing import Preprocessing

__all__ = [
    "FACTORY_SYNTAX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LoadedModel",
    "ModelLoadError",
    "ModelSpec",
    "Preprocessing",
    "PreprocessingError",
    "RandomInitWarning",
    "UnknownModel",
    "ZooError",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FACTORY_SYNTAX = "path/to/file.py:factory or package.module:factory"


class RandomInitWarning(UserWarning):
    """A model runs with random weights because no weights were given or found."""


@dataclass(frozen=True)
class ModelSpec:
    """How to build, load and feed one model.

    Attributes:
        name: zoo name (or the user factory string).
        architecture: what the network is, for the catalog's `model` row.
        build: returns a randomly initialised module.
        layers: default CLA layers, dotted module paths in forward order (empty for user models
            that declare none).
        preprocessing: how images become the model's input (size, resize, mean/std, channels).
            Give it, or the older `input_size`/`mean`/`std` (a crop to `input_size`); with
            neither the model gets none: [0, 1] RGB at the images' own size.
        input_size, mean, std: mirrors of `preprocessing` (None where it has none), kept so
            existing callers read them as before.
        labels: output class names by logit index, where known.
        default_weights: a bundled (or installed-package) weights file, used when present and none
            is given.
        cache_names: files looked for in library caches (never downloaded): bare names in torch
            hub's `checkpoints/`, `hf:`-prefixed glob patterns in the Hugging Face hub cache.
        convert_state_dict: adapts a foreign state dict's keys (e.g. strip `visual.`) before loading.
        weights_hint: what to do when no weights are found (said in the random-init warning).
        weights_file_sha256: sha256 of `default_weights`' bytes, checked before it is loaded.
        imagenet_weights: the torchvision weights enum member `--weights imagenet` means
            (e.g. "ResNet50_Weights.IMAGENET1K_V1"), for torchvision models.
    """

    name: str
    architecture: str
    build: Callable[[], nn.Module]
    layers: tuple[str, ...]
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None
    default_weights: Path | None = None
    cache_names: tuple[str, ...] = ()
    convert_state_dict: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = field(default=None)
    preprocessing: Preprocessing | None = None
    weights_hint: str = ""
    weights_file_sha256: str | None = None
    imagenet_weights: str | None = None

    def __post_init__(self) -> None:
        # `preprocessing` wins when given (so dataclasses.replace(spec, preprocessing=...) works).
        pp = self.preprocessing
        if pp is None:
            pp = Preprocessing(size=self.input_size, mean=self.mean, std=self.std)
        object.__setattr__(self, "preprocessing", pp)
        object.__setattr__(self, "input_size", pp.size)
        object.__setattr__(self, "mean", pp.mean)
        object.__setattr__(self, "std", pp.std)

    @property
    def pp(self) -> Preprocessing:
        """`preprocessing`, typed as always set (__post_init__ fills it in)."""
        assert self.preprocessing is not None, "ModelSpec.__post_init__ sets preprocessing"
        return self.preprocessing


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
