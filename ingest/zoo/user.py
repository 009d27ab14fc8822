"""User models named by a factory string, `path/to/file.py:factory` or `package.module:factory`.

The factory is called with no arguments and must return a `torch.nn.Module`; a user model has no
default layers (the caller names them) and ImageNet's preprocessing conventions.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from torch import nn

from ingest.zoo.specs import FACTORY_SYNTAX, IMAGENET_MEAN, IMAGENET_STD, ModelLoadError, ModelSpec, UnknownModel

__all__ = ["user_spec"]


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
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's file failed to import: one line, its own message
            sys.modules.pop(mod_name, None)
            raise ModelLoadError(f"importing {path} raised {type(exc).__name__}: {exc} (the error is in that file)") from exc
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise ModelLoadError(f"cannot import module {target!r} ({exc}): give {FACTORY_SYNTAX}") from None


def user_spec(name: str) -> ModelSpec:
    """The spec of the factory `name` (imported now; the model is built by `spec.build()`).

    Raises:
        UnknownModel: not a factory string.
        ModelLoadError: the file or module cannot be imported, or it has no such callable.
    """
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
        try:
            module_out = factory()
        except Exception as exc:  # the user's own code failed: say so in one line, with its message
            raise ModelLoadError(f"{name} raised {type(exc).__name__}: {exc} (the error is in the factory's own code)") from exc
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
