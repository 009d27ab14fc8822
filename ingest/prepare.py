"""An ingest request resolved against its model, before any computation or catalog access.

`IngestConfig` says what to ingest; `prepare` loads the named model once (or wraps the
`nn.Module` the caller passed, `ingest.module_model`), preprocesses the images, checks k against
the layers (`catalog.sizes`) and works out the run's provenance key: the identity of its result.
`ingest.pipeline` takes it from there.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from catalog.errors import CircuitsError
from catalog.names import check_concept_name
from catalog.sizes import k_per_layer
from ingest.images import ImageSet
from ingest.preflight import check_ingest_inputs

if TYPE_CHECKING:  # torch stays unimported until a run needs it
    from torch import nn

    from ingest.compute import Scores
    from ingest.zoo import LoadedModel
    from ingest.zoo.preprocessing import Preprocessing

__all__ = ["CLA_METHOD", "IngestConfig", "IngestError", "Prepared", "library_versions", "prepare", "provenance_key"]

CLA_METHOD = "cla-v1"  # bump when the score's arithmetic changes: old runs stop matching


class IngestError(CircuitsError):
    """An ingest request that cannot be carried out as given."""


@dataclass(frozen=True)
class IngestConfig:
    """What to ingest. Defaults are the ones `circuits ingest` uses.

    `model` is the network: a `torch.nn.Module` you hold (give its `layers=`, and its
    `preprocessing=` if it expects any), or a zoo name / `path/to/file.py:factory` string (the
    command line's way; loaded once, in `prepare`).
    """

    model: nn.Module | str | LoadedModel  # the module; or a zoo name / "path/to/file.py:factory"; or zoo.load_model's
    concept: str
    layers: tuple[str, ...] | None = None  # None: the zoo model's default CLA layers (required for a module)
    k: int | tuple[int, ...] = 5  # neurons per layer in the circuit (catalog.sizes.parse_k)
    weights: str | None = None  # local weights file for a named model; None: bundled/cache/random-init
    device: str = "auto"
    batch_size: int = 16  # images per forward pass; memory, not results, depends on it
    max_sweeps: int = 50
    force: bool = False  # recompute even when an identical run exists
    # The model's own preprocessing when `model` is a module (None: none, [0, 1] RGB at the images'
    # own size); a named model carries its own (ingest.zoo.preprocessing.Preprocessing).
    preprocessing: Preprocessing | None = None
    # Preprocessing overrides; None keeps the model's own (a zoo model's published one, a user
    # factory's declared one, or none at all: [0, 1] RGB at the images' own size).
    input_size: int | str | None = None  # pixels, or "keep" for each image's own size
    resize: str | None = None  # "crop" (shorter side, centre) or "stretch"
    normalize: str | tuple[tuple[float, ...], tuple[float, ...]] | None = None  # "none", "imagenet", "M,M,M:S,S,S"
    channels: int | None = None  # 1 (luminance) or 3 (RGB)
    # torch CPU threads, set for the process when given (`ingest.threads.configure`); None leaves
    # the process's setting alone (the CLI sets it).
    threads: int | None = None
    tokens: str = "all"  # token layers: which tokens count, "all", "patches" or "cls" (ingest.cla.tokens)

    def preprocessing_for(self, spec_preprocessing: Preprocessing) -> Preprocessing:
        """The model's preprocessing with this config's overrides applied."""
        return spec_preprocessing.with_overrides(
            input_size=self.input_size, resize=self.resize, normalize=self.normalize, channels=self.channels
        )


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _torchvision_version(),
        "numpy": np.__version__,
        "visual-circuit-catalog": version("visual-circuit-catalog"),
    }


def _torchvision_version() -> str:
    """`torchvision.__version__` (with its local tag, e.g. "+cu130", which the package metadata
    lacks), read from its `version.py`: importing torchvision imports torch._dynamo, ~2 s of every
    ingest process that needs no torchvision model."""
    import importlib.util
    import re
    from pathlib import Path

    spec = importlib.util.find_spec("torchvision")  # a top-level name: finds it without importing it
    if spec is not None and spec.submodule_search_locations:
        file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
        found = re.search(r"^__version__ = ['\"]([^'\"]+)['\"]", file.read_text(), re.M) if file.is_file() else None
        if found:
            return found.group(1)
    import torchvision  # a layout without version.py: ask the package itself

    return torchvision.__version__


def _loaded(config: IngestConfig) -> LoadedModel:
    """`config.model` as a `LoadedModel` (zoo name and identity kept), on `config.layers` if given."""
    import dataclasses

    from ingest.cla.capture import resolve_layers
    from ingest.zoo import LoadedModel

    loaded = config.model
    if not isinstance(loaded, LoadedModel):
        raise IngestError(
            f"`model=` takes an nn.Module, a zoo name or path/to/file.py:factory, not a {type(loaded).__name__}"
        )
    if config.weights is not None or config.preprocessing is not None:
        raise IngestError(
            "a loaded model carries its weights and preprocessing: leave `weights=` and `preprocessing=` out"
        )
    if config.layers is not None and tuple(config.layers) != tuple(loaded.layers):
        resolve_layers(loaded.module, config.layers)  # UnknownLayer before any compute
        loaded = dataclasses.replace(loaded, layers=tuple(config.layers))
    return loaded


def provenance_key(weights_sha256: str, layers: Sequence[str], image_set_sha256: str, params: dict[str, Any]) -> str:
    """The identity of a run's result: same key, same matrices."""
    blob = json.dumps(
        {"weights": weights_sha256, "layers": list(layers), "images": image_set_sha256, "params": params},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Prepared:
    """An ingest request resolved against its model, before any computation (see `prepare`).

    Attributes:
        config: the request.
        image_set: the concept's images.
        loaded: the loaded model (`ingest.zoo.LoadedModel`).
        x: the preprocessed images (N, C, H, W).
        preprocessing: the preprocessing that made `x` (stored in the run's params).
        layers: the run's layers in forward order.
        ks: circuit neurons per layer.
        model_fields: `catalog.store.ensure_model` keyword arguments.
        run_fields: `catalog.store.write_run` provenance keyword arguments (no timing yet).
        started: when `prepare` began (`time.perf_counter()` of this process): the run's duration
            counts from here.
        scores: computes the run's score matrices as `scores(prepared, on_batch)` in place of plain
            CLA of `x` (`ingest.compute.Scores`, e.g. a contrast of two image sets, whose
            `provenance_key` says so); None for plain CLA.
    """

    config: IngestConfig
    image_set: ImageSet
    loaded: Any
    x: Any
    preprocessing: Any  # ingest.zoo.preprocessing.Preprocessing: what made `x`
    layers: list[str]
    ks: list[int]
    model_fields: dict[str, Any]
    run_fields: dict[str, Any]
    started: float
    scores: Scores | None = None

    @property
    def provenance_key(self) -> str:
        """The run's identity (`provenance_key`), as its run row records it."""
        return self.run_fields["provenance_key"]


def prepare(config: IngestConfig, image_set: ImageSet) -> Prepared:
    """Resolve the model (the module given, or load the named one), preprocess the images and
    work out the run's provenance key (no catalog).

    Raises:
        IngestError, BadK, ModuleError, UnknownModel, UnknownLayer, ImageSetError: bad input.
    """
    from ingest import zoo
    from ingest.cla.capture import layer_widths
    from ingest.hooks import resolve_device
    from ingest.module_model import is_module, loaded_module

    started = time.perf_counter()
    check_concept_name(config.concept)  # before anything: a refused name writes nothing
    if config.threads is not None:
        from ingest.threads import configure

        configure(config.threads)
    if is_module(config.model):
        if config.weights is not None:
            raise IngestError("`weights=` names a file for a named model: load the weights into your module instead")
        loaded = loaded_module(config.model, layers=config.layers, preprocessing=config.preprocessing)
    elif isinstance(config.model, str):
        if config.preprocessing is not None:
            raise IngestError(
                "`preprocessing=` is for a model object; a named model carries its own "
                "(override parts with `input_size=`, `resize=`, `normalize=`, `channels=`)"
            )
        loaded = zoo.load_model(config.model, weights=config.weights, layers=config.layers)  # the one load
    else:  # a LoadedModel from zoo.load_model: a caller running several ingests loads it once
        loaded = _loaded(config)
    layers = list(loaded.layers)
    if len(layers) < 2:
        raise IngestError("CLA needs at least two layers: pass `layers=` (two or more, forward order)")
    pp = config.preprocessing_for(loaded.spec.pp)
    x = zoo.preprocess(pp, list(image_set.images))  # (N, C, H, W)
    check_ingest_inputs(
        loaded.module, layers, x, batch_size=config.batch_size, device=config.device, tokens=config.tokens
    )
    # Register the adapter's whole layer list when the run uses a subset of it, so layer positions
    # in the catalog are forward order whatever the first run's choice was.
    catalogued = list(loaded.spec.layers) if set(layers) <= set(loaded.spec.layers) else layers
    all_widths = dict(zip(catalogued, layer_widths(loaded.module, catalogued, tuple(x.shape[1:]))))
    widths = [all_widths[name] for name in layers]
    ks = k_per_layer(config.k, layers, widths)
    # The preprocessing is part of the provenance (and so of the key): other inputs, other scores.
    params = {"method": CLA_METHOD, "input_size": int(x.shape[-1]), "preprocessing": pp.to_params()}
    if config.tokens != "all":  # absent for "all", so keys of runs made before token selection hold
        params["tokens"] = config.tokens
    key = provenance_key(loaded.weights_sha256, layers, image_set.sha256, params)
    run_fields = dict(
        layer_names=layers,
        params=params,
        image_set_sha256=image_set.sha256,
        n_images=len(image_set),
        provenance_key=key,
        library_versions={**library_versions(), "weights_source": loaded.weights_source},  # queries.suggest
        device=str(resolve_device(config.device)),  # the device the run row records
    )
    model_fields = dict(
        name=loaded.spec.name,
        architecture=loaded.spec.architecture,
        weights_sha256=loaded.weights_sha256,
        layers=list(all_widths.items()),
    )
    return Prepared(config, image_set, loaded, x, pp, layers, ks, model_fields, run_fields, started)
