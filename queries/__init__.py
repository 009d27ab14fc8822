"""The read side of the catalog: graphs, overlap, composition, listings, prune plans, masks.

Everything answers from the catalog alone (no model, no torch). Functions take a SQLAlchemy
Session and return plain objects::

    from catalog.engine import open_catalog
    from queries import overlap_matrix

    with open_catalog("circuits.duckdb", read_only=True).session() as s:
        m = overlap_matrix(s, "catfish-mini", metric="weighted")

The names below are imported lazily (on first use), so `import queries` — which the `circuits`
command does at start-up — stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EdgeSelection": "queries.graphs",
    "circuit_graph": "queries.graphs",
    "run_top_edges": "queries.graphs",
    "top_edge_graph": "queries.graphs",
    "OverlapMatrix": "queries.overlap",
    "SharedNeurons": "queries.overlap",
    "overlap_matrix": "queries.overlap",
    "overlap_of_circuits": "queries.overlap",
    "shared_neurons": "queries.overlap",
    "Composition": "queries.compose",
    "compose_circuit": "queries.compose",
    "CircuitDetails": "queries.listing",
    "circuit_details": "queries.listing",
    "concept_circuits": "queries.listing",
    "list_circuits": "queries.listing",
    "list_concepts": "queries.listing",
    "list_models": "queries.listing",
    "list_runs": "queries.listing",
    "resolve_circuit": "queries.listing",
    "resolve_model": "queries.listing",
    "PrunePlan": "queries.prune_plan",
    "plan_pruning": "queries.prune_plan",
    "overlap_heatmap": "queries.plots",
    "ExportResult": "queries.mask_export",
    "export_mask": "queries.mask_export",
    "mask_from_circuit": "queries.mask_export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'queries' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
