"""The model zoo: named model specs (architecture, default layers, preprocessing, weights), user
factories, and weights I/O. `load_model(name)` is the entry point.

- `specs`: `ModelSpec`, `LoadedModel` and the zoo's errors;
- `builtin`: the five built-in specs; `user`: factories named `path/file.py:factory`;
- `registry`: `register(name, make_spec)`, `get_spec`, `available_models`, `load_model`;
- `preprocessing`: `Preprocessing` (size, resize, mean/std, channels) and `preprocess`;
- `weights`: reading, loading and hashing weights (`--weights imagenet` through torchvision's cache);
- `catfish_mini`, `inceptionv1`, `clip_rn50`, `efficientnet_lite`: architectures the zoo builds itself.
"""

from ingest.cla.capture import UnknownLayer
from ingest.zoo.errors import PreprocessingError
from ingest.zoo.preprocessing import Preprocessing, preprocess
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
from ingest.zoo.user import declare
from ingest.zoo.weights import WeightsError, weights_sha256

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LoadedModel",
    "ModelLoadError",
    "ModelSpec",
    "Preprocessing",
    "PreprocessingError",
    "RandomInitWarning",
    "UnknownLayer",
    "UnknownModel",
    "WeightsError",
    "ZooError",
    "available_models",
    "declare",
    "get_spec",
    "load_model",
    "preprocess",
    "register",
    "weights_sha256",
]
