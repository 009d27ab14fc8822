"""Lazy package exports: names imported on first use, yet visible to `dir()` and tab completion.

Each package `__init__` lists its public names with the module(s) that define them and calls
`lazy_exports`; its `TYPE_CHECKING` block imports the same names for type checkers. Standard
library only, so `import catalog` (done by every command for the error classes) stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`__all__`, `__getattr__` and `__dir__` for a package whose names load on first use.

    Args:
        package: the package's dotted name (for error messages).
        exports: public name → the modules that may define it, tried in order (a sub-package
            first, then the module inside it, so moving a definition within the sub-package
            does not break the export; a candidate module that does not exist is skipped). A name equal to the module's last part exports the
            module itself (e.g. "store": ["catalog.store"]).

    Returns:
        (`__all__`, `__getattr__`, `__dir__`) to assign in the package's `__init__`.
    """
    names = sorted(exports)

    def __getattr__(name: str) -> Any:
        candidates = exports.get(name)
        if candidates is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        for module_name in candidates:
            if module_name.rsplit(".", 1)[-1] == name:
                return importlib.import_module(module_name)
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise  # a real missing dependency (torch without the [ingest] extra)
                continue  # this candidate does not exist (yet): try the next
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"{package}.{name}: none of {list(candidates)} defines it")

    def __dir__() -> list[str]:
        return list(names)

    return names, __getattr__, __dir__
