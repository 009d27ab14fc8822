"""Model zoo: named model adapters, weight loading and preprocessing (DESIGN §8).

Each entry is a `ModelSpec`: a random-init builder, the default CLA layers (dotted module paths
in forward order), preprocessing (input size, mean, std) and output labels where known. Built in:
`catfish-mini` (bundled weights), torchvision `googlenet` and `resnet50`, `inceptionv1` (Lucid's
layout) and `clip-rn50` (CLIP's image tower). Any other model is named `path/to/file.py:factory`
or `package.module:factory`, with its layers given.

Weights, in order: a local file passed as `weights=`; the spec's bundled file; a file already in
a library cache (torch hub's `checkpoints/`, the Hugging Face hub cache); else random init with a
visible warning. Nothing is ever downloaded. Random init is seeded, so it is reproducible and its
weights hash is stable across processes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import difflib
import hashlib
import importlib
import importlib.util
import os
from pathlib import Path
import sys
from typing import Any
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from catalog.errors import CircuitsError
from ingest.cla.capture import UnknownLayer, resolve_layers
from ingest.zoo.weights import WeightsError, find_cached, load_into, read_state_dict, weights_sha256

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

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FACTORY_SYNTAX = "path/to/file.py:factory or package.module:factory"
RANDOM_INIT_SEED = 0  # fixed so a random-init model is the same network in every process


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


# --- built-in entries -------------------------------------------------------------------------


def _drop_aux(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's GoogLeNet checkpoint carries the (untrained) auxiliary heads; we build without."""
    return {k: v for k, v in sd.items() if not k.startswith(("aux1.", "aux2."))}


def _googlenet() -> ModelSpec:
    from torchvision.models import GoogLeNet_Weights, googlenet

    return ModelSpec(
        name="googlenet",
        architecture="torchvision.models.googlenet",
        # transform_input=True as for torchvision's ImageNet weights: they expect ImageNet-normalised input.
        # init_weights=False: PyTorch default init, 30× faster than truncated normals; weights are loaded anyway.
        build=lambda: googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=False),
        layers=tuple(f"inception{b}" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")),
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        labels=tuple(GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"]),
        cache_names=("googlenet-1378be20.pth",),
        convert_state_dict=_drop_aux,
    )


def _resnet50() -> ModelSpec:
    from torchvision.models import ResNet50_Weights, resnet50

    return ModelSpec(
        name="resnet50",
        architecture="torchvision.models.resnet50",
        build=lambda: resnet50(weights=None),
        layers=("layer1", "layer2", "layer3", "layer4"),
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        labels=tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"]),
        cache_names=("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
    )


def _inceptionv1() -> ModelSpec:
    from ingest.zoo.inceptionv1 import LAYERS, build_inceptionv1

    return ModelSpec(
        name="inceptionv1",
        architecture="InceptionV1 (Lucid/Microscope inception5h layout)",
        build=build_inceptionv1,
        layers=LAYERS,
        input_size=224,
        mean=(117 / 255,) * 3,  # Lucid's value range: 255·x − 117
        std=(1 / 255,) * 3,
        labels=None,  # 1008 outputs; Lucid's label file is not shipped
        cache_names=("inception5h.pth",),  # Lucent's converted weights, as torch hub caches them
    )


def _clip_rn50() -> ModelSpec:
    from ingest.zoo.clip_rn50 import LAYERS, build_clip_rn50, strip_visual_prefix

    hf = "hf:models--timm--resnet50_clip.openai/snapshots/*/"
    return ModelSpec(
        name="clip-rn50",
        architecture="CLIP RN50 image tower (ModifiedResNet, open_clip key names)",
        build=build_clip_rn50,
        layers=LAYERS,
        input_size=224,
        mean=(0.48145466, 0.4578275, 0.40821073),
        std=(0.26862954, 0.26130258, 0.27577711),
        labels=None,  # outputs a 1024-d image embedding, not classes
        cache_names=(hf + "open_clip_model.safetensors", hf + "open_clip_pytorch_model.bin"),
        convert_state_dict=strip_visual_prefix,
    )


def _catfish_mini() -> ModelSpec:
    try:
        from ingest.zoo import catfish_mini as cm
    except ModuleNotFoundError as exc:
        if exc.name != "ingest.zoo.catfish_mini":
            raise
        raise UnknownModel("catfish-mini is not installed in this checkout (ingest/models/catfish_mini.py)") from None
    return ModelSpec(
        name="catfish-mini",
        architecture="catfish-mini (InceptionV1-style, CatFish-synth)",
        build=cm.build_catfish_mini,
        layers=tuple(cm.CATFISH_MINI_LAYERS),
        input_size=int(cm.INPUT_SIZE),
        mean=tuple(cm.MEAN),
        std=tuple(cm.STD),
        labels=tuple(cm.CLASS_NAMES),
        default_weights=Path(__file__).resolve().parent.parent / "weights" / "catfish_mini.pt",
    )


_REGISTRY: dict[str, Callable[[], ModelSpec]] = {
    "catfish-mini": _catfish_mini,
    "googlenet": _googlenet,
    "resnet50": _resnet50,
    "inceptionv1": _inceptionv1,
    "clip-rn50": _clip_rn50,
    "typo-mini": lambda: importlib.import_module("ingest.zoo.typo_mini").spec(),
}


def register(name: str, make_spec: Callable[[], ModelSpec]) -> None:
    """Add (or replace) a zoo entry; `make_spec` runs on first use, so imports stay lazy."""
    _REGISTRY[name] = make_spec


def available_models() -> list[str]:
    """The zoo's model names, in registration order."""
    return list(_REGISTRY)


# --- user factories ---------------------------------------------------------------------------


def _import_target(target: str) -> Any:
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = Path(target).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist: give {FACTORY_SYNTAX}")
        mod_name = "circuits_user_model_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"cannot import {path} as Python: give a .py file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module  # dataclasses and pickling look modules up here
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise ModelLoadError(f"cannot import module {target!r} ({exc}): give {FACTORY_SYNTAX}") from None


def _user_spec(name: str) -> ModelSpec:
    target, _, factory_name = name.rpartition(":")
    if not target or not factory_name:
        raise UnknownModel(f"model {name!r} is not valid: give {FACTORY_SYNTAX}")
    module = _import_target(target)
    factory = getattr(module, factory_name, None)
    if factory is None or not callable(factory):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        hint = difflib.get_close_matches(factory_name, found, n=3) or found[:8]
        raise ModelLoadError(
            f"{target} has no callable {factory_name!r}"
            + (f" (callables there: {', '.join(hint)})" if hint else "")
        )

    def build() -> nn.Module:
        module_out = factory()
        if not isinstance(module_out, nn.Module):
            raise ModelLoadError(f"{name} returned a {type(module_out).__name__}, not a torch.nn.Module")
        return module_out

    return ModelSpec(
        name=name,
        architecture=f"user:{Path(target).name if target.endswith('.py') else target}:{factory_name}",
        build=build,
        layers=(),
        input_size=224,  # a user model's preprocessing is unknown: ImageNet's conventions
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def get_spec(name: str) -> ModelSpec:
    """The spec of a zoo model or of a user factory (`path/to/file.py:factory`, `pkg.mod:factory`).

    Raises:
        UnknownModel: not a zoo name and not a factory string.
        ModelLoadError: the factory's file or module cannot be imported, or it has no such callable.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]()
    if ":" in name:
        return _user_spec(name)
    close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
    raise UnknownModel(
        f"unknown model {name!r}"
        + (f" (did you mean {close[0]}?)" if close else "")
        + f": known models are {', '.join(_REGISTRY)}; or give {FACTORY_SYNTAX} with --layers"
    )


# --- weights ----------------------------------------------------------------------------------


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
            `{'state_dict': …}` checkpoint, or `.safetensors`). Default: bundled, then cached,
            then random init with a `RandomInitWarning`.
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
    """
    spec = get_spec(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        module = spec.build()
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{spec.name}'s builder returned a {type(module).__name__}, not a torch.nn.Module")

    if weights is not None:
        path = Path(weights).expanduser()
        load_into(module, read_state_dict(path), path, name=spec.name, convert=spec.convert_state_dict)
        source = f"file:{path.resolve()}"
    elif spec.default_weights is not None and spec.default_weights.is_file():
        default = spec.default_weights
        load_into(module, read_state_dict(default), default, name=spec.name, convert=spec.convert_state_dict)
        source = f"bundled:{spec.default_weights.name}"
    elif (cached := find_cached(spec.cache_names)) is not None:
        load_into(module, read_state_dict(cached), cached, name=spec.name, convert=spec.convert_state_dict)
        source = f"cache:{cached}"
    else:
        missing = f" (its bundled file {spec.default_weights} is missing)" if spec.default_weights else ""
        warnings.warn(
            f"{spec.name}: no weights given or found{missing}, using random init (weights source "
            "'random-init'): circuits of an untrained network mean little; pass --weights FILE",
            RandomInitWarning,
            stacklevel=2,
        )
        source = "random-init"

    chosen = tuple(layers) if layers is not None else spec.layers
    if not chosen:
        raise ZooError(f"{spec.name} has no default layers: name them with --layers A,B,… (layers=[...])")
    resolve_layers(module, chosen)  # UnknownLayer (close names listed) before any compute
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    module = module.to(device).eval()
    return LoadedModel(spec=spec, module=module, layers=chosen, weights_sha256=weights_sha256(module), weights_source=source)


# --- preprocessing ----------------------------------------------------------------------------


def _to_chw(image: Any, i: int) -> torch.Tensor:
    """One image → float (3, H, W) in [0, 1]."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ZooError(f"image {i} has dtype {arr.dtype}: give uint8 RGB (H, W, 3) arrays or PIL images")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ZooError(f"image {i} has shape {arr.shape}: expected (H, W, 3)")
    t = torch.from_numpy(arr[:, :, :3].copy()).permute(2, 0, 1)  # (3, H, W) uint8; copy: PIL arrays are read-only
    return t.float().div_(255.0)


def _resize_center_crop(t: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to `size` (bilinear, antialiased), then crop the centre. (3, size, size)"""
    _, h, w = t.shape
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        t = F.interpolate(t[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
        top, left = (nh - size) // 2, (nw - size) // 2
        t = t[:, top:top + size, left:left + size]
    return t


def preprocess(spec: ModelSpec, images: Any) -> torch.Tensor:
    """Images → the model's input: resized, scaled to [0, 1], normalised.

    Args:
        spec: the model's spec (input size, mean, std).
        images: a list of PIL images or uint8 RGB arrays (H, W, 3), or one uint8 array
            (N, H, W, 3). Other sizes are resized (shorter side to `input_size`) and centre-cropped.

    Returns:
        float32 tensor (N, 3, input_size, input_size) on CPU.

    Raises:
        ZooError: no images, or an image that is not uint8 RGB.
    """
    if isinstance(images, np.ndarray) and images.ndim == 4:
        items: Sequence[Any] = list(images)
    elif isinstance(images, np.ndarray) or hasattr(images, "convert"):
        items = [images]
    else:
        items = list(images)
    if not items:
        raise ZooError("no images to preprocess")
    x = torch.stack([_resize_center_crop(_to_chw(im, i), spec.input_size) for i, im in enumerate(items)])
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std  # (N, 3, S, S)
