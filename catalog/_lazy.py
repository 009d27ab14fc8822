"""Lazy package exports: names imported on first use, yet visible to `dir()` and tab completion.

Each package `__init__` lists its public names with the module(s) that define them and calls
`lazy_exports`; its `TYPE_CHECKING` block imports the same names for type checkers. Standard
library only, so `import catalog` (done by every command for the error classes) stays cheap.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

__all__ = ["lazy_exports"]

_MISSING = object()


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]], *, modules: Sequence[str] = ()
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`__all__`, `__getattr__` and `__dir__` for a package whose names load on first use.

    Call it from the package's `__init__`. An exported name must not also be a submodule's name
    (importing the submodule would rebind it; tests/test_public_api.py checks).

    Args:
        package: the package's dotted name.
        exports: public name → the modules that may define it, tried in order (a sub-package
            first, then the module inside it, so moving a definition within the sub-package
            does not break the export; a candidate module that does not exist is skipped).
        modules: public names that are submodules of the package, exported as modules
            (e.g. "store" for `catalog.store`).

    Returns:
        (`__all__`, `__getattr__`, `__dir__`) to assign in the package's `__init__`.
    """
    names = sorted({*exports, *modules})
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        if name in modules:
            return importlib.import_module(f"{package}.{name}")
        candidates = exports.get(name)
        if candidates is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        for module_name in candidates:
            try:
                source = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise  # a real missing dependency (torch without the [ingest] extra)
                continue  # this candidate does not exist (yet): try the next
            value = getattr(source, name, _MISSING)
            if value is not _MISSING and not isinstance(value, ModuleType):
                setattr(module, name, value)  # later lookups skip __getattr__
                return value
        raise AttributeError(f"{package}.{name}: none of {list(candidates)} defines it")

    def __dir__() -> list[str]:
        return list(names)

    return names, __getattr__, __dir__
