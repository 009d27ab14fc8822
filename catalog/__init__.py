"""The circuit catalog: schema, engines and sessions, migrations, bulk I/O and data functions.

    from catalog import open_catalog, store
    cat = open_catalog("circuits.duckdb", read_only=True)
    with cat.session() as s:
        runs = store.list_runs(s)

Attributes are imported on first use, so `import catalog` (done by every CLI module for the error
classes) stays cheap and `circuits --help` fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Catalog",
    "CatalogError",
    "CircuitsError",
    "NotFound",
    "bulk",
    "open_catalog",
    "run_query",
    "store",
]

_LAZY = {
    "Catalog": ("catalog.engine", "Catalog"),
    "open_catalog": ("catalog.engine", "open_catalog"),
    "CatalogError": ("catalog.errors", "CatalogError"),
    "CircuitsError": ("catalog.errors", "CircuitsError"),
    "NotFound": ("catalog.errors", "NotFound"),
    "run_query": ("catalog.sql", "run_query"),
    "bulk": ("catalog.bulk", None),
    "store": ("catalog.store", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'catalog' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)
