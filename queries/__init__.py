"""The read side of the catalog: graphs, overlap, composition, listings, prune plans, masks.

Everything answers from the catalog alone (no model, no torch). The first argument is the
catalog: reads take a SQLAlchemy Session (you own its transaction) and return plain objects;
`export_mask`, which writes a file, takes the `Catalog` like every call that writes (`ingest`'s
`ingest_concept`, `refine`, `ablate`); `mask_from_circuit` takes either::

    from catalog import open_catalog
    from queries import overlap_matrix

    with open_catalog("circuits.duckdb", read_only=True).session() as s:
        m = overlap_matrix(s, "catfish-mini", metric="weighted")

Names are imported on first use, so `import queries` stays cheap; `dir(queries)`, tab completion
and type checkers still see all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from catalog._lazy import lazy_exports

if TYPE_CHECKING:
    from queries.compose import Composition, compose_circuit
    from queries.graphs import EdgeSelection, circuit_graph, run_top_edges, top_edge_graph
    from queries.listing import (
        CircuitDetails,
        Window,
        circuit_details,
        concept_circuits,
        list_circuits,
        list_concepts,
        list_models,
        list_runs,
        resolve_circuit,
        resolve_model,
    )
    from queries.listing_pages import Filters, Page, list_page
    from queries.mask_export import ExportResult, MaskOptions, export_mask, mask_from_circuit
    from queries.overlap import (
        OverlapMatrix,
        SharedNeurons,
        overlap_matrix,
        overlap_of_circuits,
        shared_neurons,
    )
    from queries.plots import overlap_heatmap
    from queries.prune_plan import PrunePlan, plan_pruning

__all__, __getattr__, __dir__ = lazy_exports(
    "queries",
    {
        "EdgeSelection": ("queries.graphs",),
        "circuit_graph": ("queries.graphs",),
        "run_top_edges": ("queries.graphs",),
        "top_edge_graph": ("queries.graphs",),
        "OverlapMatrix": ("queries.overlap",),
        "SharedNeurons": ("queries.overlap",),
        "overlap_matrix": ("queries.overlap",),
        "overlap_of_circuits": ("queries.overlap",),
        "shared_neurons": ("queries.overlap",),
        "Composition": ("queries.compose",),
        "compose_circuit": ("queries.compose",),
        "CircuitDetails": ("queries.listing",),
        "circuit_details": ("queries.listing",),
        "concept_circuits": ("queries.listing",),
        "list_circuits": ("queries.listing",),
        "list_concepts": ("queries.listing",),
        "list_models": ("queries.listing",),
        "list_runs": ("queries.listing",),
        "resolve_circuit": ("queries.listing",),
        "resolve_model": ("queries.listing",),
        "Window": ("queries.listing",),
        "Filters": ("queries.listing_pages",),
        "Page": ("queries.listing_pages",),
        "list_page": ("queries.listing_pages",),
        "PrunePlan": ("queries.prune_plan",),
        "plan_pruning": ("queries.prune_plan",),
        "overlap_heatmap": ("queries.plots",),
        "ExportResult": ("queries.mask_export",),
        "MaskOptions": ("queries.mask_export",),
        "export_mask": ("queries.mask_export",),
        "mask_from_circuit": ("queries.mask_export",),
    },
)
