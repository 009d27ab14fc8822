"""The circuit catalog: schema, engines and sessions, migrations, bulk I/O, read-only SQL, the
torch-free mask file format and the domain vocabulary.

    from catalog import open_catalog, run_query, run_sql
    cat = open_catalog("circuits.duckdb", read_only=True)
    print(run_query(cat, "select concept, k from circuit_v").rows)
    print(run_sql("circuits.duckdb", "select count(*) from run").rows)   # the sandbox of `circuits sql`

Names are imported on first use (`catalog._lazy`), so `import catalog` (done by every command
for the error classes) stays cheap and `circuits --help` fast; `dir(catalog)`, tab completion and
type checkers still see all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from catalog._lazy import lazy_exports

if TYPE_CHECKING:
    from catalog import bulk, errors, store, vocab
    from catalog.engine import Catalog, open_catalog
    from catalog.errors import (
        PARAMETER_MENTION,
        CatalogError,
        CatalogLocked,
        CircuitsError,
        NotFound,
        QueryError,
        ReadOnlyViolation,
        SchemaOutdated,
    )
    from catalog.mask_file import Mask, MaskError
    from catalog.mask_io import read_mask, write_mask  # catalog.mask_file before the mask_io split
    from catalog.sql import QueryResult, open_sql_catalog, run_query, run_sql
    from catalog.sql_limits import ResultTooLarge, SqlTimeout
    from catalog.vocab import InterventionKind, MaskKind, Metric, RunStatus

_ERRORS = ("catalog.errors",)
_VOCAB = ("catalog.vocab",)
_MASKS = ("catalog.mask_file",)
_MASK_IO = ("catalog.mask_io", "catalog.mask_file")  # file I/O may live beside the format

__all__, __getattr__, __dir__ = lazy_exports(
    "catalog",
    {
        "Catalog": ("catalog.engine",),
        "open_catalog": ("catalog.engine",),
        "CatalogError": _ERRORS,
        "CatalogLocked": _ERRORS,
        "CircuitsError": _ERRORS,
        "PARAMETER_MENTION": _ERRORS,
        "NotFound": _ERRORS,
        "QueryError": _ERRORS,
        "ReadOnlyViolation": _ERRORS,
        "SchemaOutdated": _ERRORS,
        "InterventionKind": _VOCAB,
        "MaskKind": _VOCAB,
        "Metric": _VOCAB,
        "RunStatus": _VOCAB,
        "Mask": _MASKS,
        "MaskError": _MASKS,
        "read_mask": _MASK_IO,
        "write_mask": _MASK_IO,
        "QueryResult": ("catalog.sql",),
        "run_query": ("catalog.sql",),
        "run_sql": ("catalog.sql",),
        "open_sql_catalog": ("catalog.sql",),
        "ResultTooLarge": ("catalog.sql_limits",),
        "SqlTimeout": ("catalog.sql_limits",),
    },
    modules=("bulk", "errors", "store", "vocab"),
)
