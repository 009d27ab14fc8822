"""Data functions of the catalog: models, concepts, runs, circuits, interventions.

Every function takes a Session and never commits; the caller owns the transaction (docs/architecture.md, "Conventions"):

    with cat.session() as s, s.begin():
        model = ensure_model(s, name=..., architecture=..., weights_sha256=..., layers=[...])
        concept_id = ensure_concept(s, "cat")
        run_id = write_run(s, model=model, concept_id=concept_id, ..., matrices=scores)

Results are the plain frozen dataclasses of `catalog.refs`, re-exported here. Neurons, edges and
circuit members go through `catalog.bulk`; only the few descriptive rows use the ORM. Missing ids
raise `NotFound`, invalid input `CatalogError`. The functions live in `store_models`,
`store_runs` and `store_circuits`; import them from here.
"""

from __future__ import annotations

from catalog.refs import CircuitRef, EvaluationRow, InterventionRef, LayerRef, ModelRef, RunRef
from catalog.store_circuits import (
    find_circuits,
    list_circuits,
    list_interventions,
    read_circuit,
    read_circuits,
    write_circuit,
    write_intervention,
)
from catalog.store_models import (
    describe_concept,
    ensure_concept,
    ensure_model,
    find_model,
    label_neurons,
    neuron_labels,
    read_model,
    write_example_images,
)
from catalog.store_runs import (
    RunExists,
    delete_run,
    find_complete_run,
    list_runs,
    read_run,
    read_run_edges_arrow,
    read_run_matrices,
    read_runs,
    record_failed_run,
    write_run,
)

__all__ = [
    "CircuitRef",
    "EvaluationRow",
    "InterventionRef",
    "LayerRef",
    "ModelRef",
    "RunExists",
    "RunRef",
    "delete_run",
    "describe_concept",
    "ensure_concept",
    "ensure_model",
    "find_circuits",
    "find_complete_run",
    "find_model",
    "label_neurons",
    "list_circuits",  # the old name of find_circuits, kept for one release
    "list_interventions",
    "list_runs",
    "neuron_labels",
    "read_circuit",
    "read_circuits",
    "read_model",
    "read_run",
    "read_run_edges_arrow",
    "read_run_matrices",
    "read_runs",
    "record_failed_run",
    "write_circuit",
    "write_example_images",
    "write_intervention",
    "write_run",
]
