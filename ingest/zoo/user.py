"""User models named by a factory string, `path/to/file.py:factory` or `package.module:factory`.

The factory is called with no arguments and must return a `torch.nn.Module`. It may declare,
as attributes (set by hand or with the `declare` decorator; a factory that is a class may hold
them as class attributes):

- `preprocessing`: a `Preprocessing` or a dict of its fields (`size`, `resize`, `mean`, `std`,
  `channels`), e.g. `Preprocessing(size=64)`;
- `class_names`: output class names by logit index (for `ablate --label` and accuracy);
- `layers`: default CLA layers (dotted module paths, forward order).

A factory that declares nothing gets no preprocessing at all: [0, 1] RGB floats at the images'
own size, no normalisation (the tool cannot know that ImageNet statistics apply), and no layers
or class names (the caller gives them).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from ingest.user_code import register_user_code
from ingest.zoo.preprocessing import Preprocessing
from ingest.zoo.specs import FACTORY_SYNTAX, ModelLoadError, ModelSpec, UnknownModel

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["declare", "read_class_names", "user_spec"]


def declare(
    *,
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
) -> Callable[[F], F]:
    """Decorator that declares a factory's preprocessing, class names and default layers.

    Example:
        >>> @declare(preprocessing=Preprocessing(size=64), class_names=["cat", "fish"], layers=["c1", "c2"])
        ... def make_net(): ...
    """

    def mark(factory: F) -> F:
        if preprocessing is not None:
            factory.preprocessing = preprocessing  # type: ignore[attr-defined]
        if class_names is not None:
            factory.class_names = tuple(class_names)  # type: ignore[attr-defined]
        if layers is not None:
            factory.layers = tuple(layers)  # type: ignore[attr-defined]
        return factory

    return mark


def _declared_preprocessing(name: str, value: Any) -> Preprocessing:
    if value is None:
        return Preprocessing()
    if isinstance(value, Preprocessing):
        return value
    if isinstance(value, Mapping):
        allowed = {"size", "resize", "mean", "std", "channels"}
        if set(value) - allowed:
            raise ModelLoadError(
                f"{name}.preprocessing has unknown keys {sorted(set(value) - allowed)}: use {sorted(allowed)}"
            )
        return Preprocessing.from_params(value)
    raise ModelLoadError(f"{name}.preprocessing is a {type(value).__name__}: give a Preprocessing or a dict")


def _declared_strings(name: str, what: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ModelLoadError(f"{name}.{what} must be a list of strings")
    return tuple(value)


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
        # As `python file.py` would: the file's folder is importable, so `from mynet import TinyNet`
        # next to it works. It stays on the path: a model may import lazily, in its forward.
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        register_user_code(path)
        # No __pycache__ beside the user's files (as `python file.py` leaves none for the script):
        # reading a model writes nothing in the user's folders.
        writes_bytecode, sys.dont_write_bytecode = not sys.dont_write_bytecode, True
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's file failed to import: one line, its own message
            sys.modules.pop(mod_name, None)
            raise ModelLoadError(
                f"importing {path} raised {type(exc).__name__}: {exc} (the error is in that file)"
            ) from exc
        finally:
            sys.dont_write_bytecode = not writes_bytecode
        return module
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise ModelLoadError(f"cannot import module {target!r} ({exc}): give {FACTORY_SYNTAX}") from None
    top = sys.modules[target.split(".")[0]]
    where = getattr(top, "__file__", None)
    if where:  # a package's folder, or a top-level module's own file
        register_user_code(
            Path(where).parent if Path(where).name == "__init__.py" else where, folder=Path(where).name == "__init__.py"
        )
    return module


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
            f"{target} has no callable {factory_name!r}" + (f" (callables there: {', '.join(hint)})" if hint else "")
        )

    def build() -> nn.Module:
        try:
            module_out = factory()
        except Exception as exc:  # the user's own code failed: say so in one line, with its message
            raise ModelLoadError(
                f"{name} raised {type(exc).__name__}: {exc} (the error is in the factory's own code)"
            ) from exc
        if not isinstance(module_out, nn.Module):
            raise ModelLoadError(f"{name} returned a {type(module_out).__name__}, not a torch.nn.Module")
        return module_out

    return ModelSpec(
        name=name,
        architecture=f"user:{Path(target).name if target.endswith('.py') else target}:{factory_name}",
        build=build,
        layers=_declared_strings(name, "layers", getattr(factory, "layers", None)) or (),
        labels=_declared_strings(name, "class_names", getattr(factory, "class_names", None)),
        # Nothing declared: no resize, no normalisation. The tool cannot know a user model's input.
        preprocessing=_declared_preprocessing(name, getattr(factory, "preprocessing", None)),
    )


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """Class names by logit index from a file: one name per line (blank lines and `#` comments
    skipped), or a JSON list, or a JSON object {"0": name, …}.

    Raises:
        ModelLoadError: the file is missing, empty, or a JSON object with gaps in its indices.
    """
    import json

    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelLoadError(f"class names file {file} does not exist: give a text file with one name per line")
    text = file.read_text(encoding="utf-8")
    names: list[str]
    if text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"class names file {file} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if isinstance(data, dict):
            try:
                by_index = {int(k): str(v) for k, v in data.items()}
            except ValueError:
                raise ModelLoadError(f"class names file {file}: JSON object keys must be logit indices") from None
            if sorted(by_index) != list(range(len(by_index))):
                raise ModelLoadError(f"class names file {file}: indices must be 0…{len(by_index) - 1} without gaps")
            names = [by_index[i] for i in range(len(by_index))]
        else:
            names = [str(v) for v in data]
    else:
        names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not names:
        raise ModelLoadError(f"class names file {file} names no class: one name per line, by logit index")
    return tuple(names)
