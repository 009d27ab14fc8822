"""Cross-Layer Attribution: layer capture, the fast and exact paths, the reference loop, search.

Names load on first use: `circuits refine` needs only the search (NumPy) and must not pay for
torch, which importing `ingest.cla.search` would otherwise cost through this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from catalog._lazy import lazy_exports

if TYPE_CHECKING:
    from ingest.cla.attribution import DEFAULT_MAX_MEMORY, CLAError, CLAMemoryError, attribute, describe_paths
    from ingest.cla.capture import capture_layers
    from ingest.cla.heads import HeadSpecError
    from ingest.cla.layer_help import candidate_layers
    from ingest.cla.plan_cache import clear_plan_cache, plan_cache_info
    from ingest.cla.reference import attribute_reference
    from ingest.cla.search import Circuit, find_circuit
    from ingest.cla.tokens import ImageSizeError, TokenSelectionError

_ATTRIBUTE = ("ingest.cla.attribution",)

__all__, __getattr__, __dir__ = lazy_exports(
    "ingest.cla",
    {
        "CLAError": _ATTRIBUTE,
        "CLAMemoryError": _ATTRIBUTE,
        "DEFAULT_MAX_MEMORY": _ATTRIBUTE,
        "attribute": _ATTRIBUTE,
        "describe_paths": _ATTRIBUTE,
        "attribute_reference": ("ingest.cla.reference", "ingest.cla.attribution"),
        "capture_layers": ("ingest.cla.capture",),
        "HeadSpecError": ("ingest.cla.heads",),
        "candidate_layers": ("ingest.cla.layer_help",),
        "ImageSizeError": ("ingest.cla.tokens",),
        "TokenSelectionError": ("ingest.cla.tokens",),
        "clear_plan_cache": ("ingest.cla.plan_cache",),
        "plan_cache_info": ("ingest.cla.plan_cache",),
        "Circuit": ("ingest.cla.search",),
        "find_circuit": ("ingest.cla.search",),
    },
)
