"""Reusing a computed run for another concept name, with the new concept recorded.

The same images ingested under a new concept name have the same provenance key as the stored
run, so nothing is recomputed; but the concept must still be recorded, or `circuits show "new
name"` and the views know nothing of it. A run belongs to one concept, so the new concept gets its
own complete run holding a copy of the stored run's edges (read back as matrices and bulk-written,
well under a second even for a googlenet-sized run) and its example images; its circuit is then
made from those edges like any reused run's. One run stands for each provenance key (`run_key`),
so the copy's key is the original key extended by the concept name (`concept_key`), which also
finds the copy next time. `library_versions["copied_from_run"]` says where it came from.
"""

from __future__ import annotations

import hashlib
from typing import Any

from catalog import store
from catalog.engine import Catalog
from catalog.models import utcnow

__all__ = ["concept_key", "run_of_concept"]


def concept_key(provenance_key: str, concept: str) -> str:
    """The provenance key of a run copied for `concept` from the run with `provenance_key`."""
    return hashlib.sha256(f"{provenance_key}|concept:{concept}".encode()).hexdigest()


def run_of_concept(cat: Catalog, prepared: Any, run_id: int, circuit_id: int | None) -> tuple[int, int | None]:
    """The stored run to reuse for this request, as a run of the request's own concept.

    Args:
        cat: an open, writable catalog.
        prepared: the request (`ingest.pipeline.Prepared`).
        run_id: the stored complete run with the request's provenance key (of any concept).
        circuit_id: that run's circuit of the request's k, or None.

    Returns:
        (run id, circuit id of this k or None): the same when the run is already the concept's;
        else the concept's copy of the run, stored now (one transaction) if it did not exist.
    """
    concept = prepared.config.concept
    with cat.session() as s:
        existing = store.read_run(s, run_id)
        if existing.concept == concept:
            return run_id, circuit_id
        key = concept_key(existing.provenance_key, concept)
        copy = store.find_complete_run(s, key)
        if copy is None:
            matrices = store.read_run_matrices(s, run_id)
    cat.release()
    if copy is None:
        copy_id = _store_copy(cat, existing, concept, key, prepared.image_set, matrices)
    else:
        copy_id = copy.id
    with cat.session() as s:
        same = [c for c in store.list_circuits(s, run_id=copy_id) if list(c.k) == prepared.ks and not c.fixed]
    cat.release()
    return copy_id, (same[0].id if same else None)


def _store_copy(cat: Catalog, existing: Any, concept: str, key: str, image_set: Any, matrices: list) -> int:
    with cat.writing() as s:  # the whole copy or nothing
        model = store.ensure_model(
            s, name=existing.model, architecture=existing.architecture, weights_sha256=existing.weights_sha256,
            layers=list(zip(existing.layer_names, existing.widths)),
        )
        concept_id = store.ensure_concept(s, concept)
        store.write_example_images(s, concept_id, image_set.sha256, list(zip(image_set.sha256s, image_set.sources)))
        try:
            return store.write_run(
                s,
                model=model,
                concept_id=concept_id,
                layer_names=list(existing.layer_names),
                params=dict(existing.params),
                image_set_sha256=existing.image_set_sha256,
                n_images=existing.n_images,
                provenance_key=key,
                library_versions={**existing.library_versions, "copied_from_run": str(existing.id)},
                device=existing.device,
                started_at=utcnow(),
                seconds=float(existing.seconds or 0.0),
                matrices=matrices,
            )
        except store.RunExists as exc:  # another process copied it meanwhile: use that copy
            return exc.run_id
