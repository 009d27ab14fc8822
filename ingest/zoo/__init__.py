"""The model zoo: named model specs (architecture, default layers, preprocessing, weights), user
factories, and weights I/O. `load_model(name)` is the entry point.

- `specs`: `ModelSpec`, `LoadedModel` and the zoo's errors;
- `builtin`: the five built-in specs; `user`: factories named `path/file.py:factory`;
- `registry`: `register(name, make_spec)`, `get_spec`, `available_models`, `load_model`;
- `preprocessing`: images to a model's input; `weights`: reading, loading and hashing weights;
- `catfish_mini`, `inceptionv1`, `clip_rn50`: the architectures the zoo builds itself.
"""

from ingest.cla.capture import UnknownLayer
from ingest.zoo.preprocessing import preprocess
from ingest.zoo.registry import available_models, get_spec, load_model, register
from ingest.zoo.specs import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadedModel,
    ModelLoadError,
    ModelSpec,
    RandomInitWarning,
    UnknownModel,
    ZooError,
)
from ingest.zoo.weights import WeightsError, weights_sha256

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
