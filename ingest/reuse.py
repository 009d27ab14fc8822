"""Reusing a computed run for another concept name, with the new concept recorded.

The same images ingested under a new concept name have the same provenance key as the stored
run, so nothing is recomputed; but the concept must still be recorded, or `circuits show "new
name"` and the views know nothing of it. A run belongs to one concept, so the new concept gets its
own complete run holding a copy of the stored run's edges (read back as matrices and bulk-written,
well under a second even for a googlenet-sized run), its example images, and — made by the caller
from those edges — its circuit. `library_versions["copied_from_run"]` says where it came from.
"""

from __future__ import annotations

from catalog import store
from catalog.engine import Catalog
from catalog.models import utcnow
from catalog.refs import RunRef
from ingest.images import ImageSet

__all__ = ["run_for_concept"]


def run_for_concept(cat: Catalog, existing: RunRef, concept: str, image_set: ImageSet) -> RunRef:
    """A complete run of `concept` with the same result as `existing`, copied once if needed.

    Args:
        cat: an open, writable catalog.
        existing: a complete run with the wanted provenance key (of any concept).
        concept: the concept the user named (already checked by `catalog.names`).
        image_set: the images just given (the same set sha256 as `existing`).

    Returns:
        `existing` when it is already this concept's; else this concept's run with the same
        provenance key, stored now if it did not exist (one transaction).
    """
    if existing.concept == concept:
        return existing
    with cat.session() as s:
        for run in reversed(store.list_runs(s, concept=concept)):
            if run.provenance_key == existing.provenance_key and run.model_id == existing.model_id:
                return run
        matrices = store.read_run_matrices(s, existing.id)
    with cat.session() as s, s.begin():  # the whole copy or nothing
        model = store.ensure_model(
            s, name=existing.model, architecture=existing.architecture, weights_sha256=existing.weights_sha256,
            layers=list(zip(existing.layer_names, existing.widths)),
        )
        concept_id = store.ensure_concept(s, concept)
        store.write_example_images(s, concept_id, image_set.sha256, list(zip(image_set.sha256s, image_set.sources)))
        run_id = store.write_run(
            s,
            model=model,
            concept_id=concept_id,
            layer_names=list(existing.layer_names),
            params=dict(existing.params),
            image_set_sha256=existing.image_set_sha256,
            n_images=existing.n_images,
            provenance_key=existing.provenance_key,
            library_versions={**existing.library_versions, "copied_from_run": str(existing.id)},
            device=existing.device,
            started_at=utcnow(),
            seconds=float(existing.seconds or 0.0),
            matrices=matrices,
        )
    with cat.session() as s:
        return store.read_run(s, run_id)
