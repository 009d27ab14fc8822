"""The model zoo: named model specs (architecture, default layers, preprocessing, weights), user
factories, and weights I/O. `load_model(name)` is the entry point.
"""

from ingest.zoo.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadedModel,
    ModelLoadError,
    ModelSpec,
    RandomInitWarning,
    UnknownLayer,
    UnknownModel,
    WeightsError,
    ZooError,
    available_models,
    get_spec,
    load_model,
    preprocess,
    register,
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
