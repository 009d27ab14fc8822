"""Reusing a computed run for another concept name, with the new concept recorded.

The same images ingested under a new concept name have the same provenance key as the stored
run, so nothing is recomputed; but the concept must still be recorded, or `circuits show "new
name"` and the views know nothing of it. A run belongs to one concept, so the new concept gets its
own complete run holding a copy of the stored run's edges (read back as matrices and bulk-written,
well under a second even for a googlenet-sized run), its example images, neuron patches and image
thumbnails (for the web view); its circuit is then
made from those edges like any reused run's. One run stands for each provenance key (`run_key`),
so the copy's key is the original key extended by the concept name (`concept_key`), which also
finds the copy next time. `library_versions["copied_from_run"]` says where it came from.
"""

from __future__ import annotations

import hashlib
from typing import Any

from catalog import store
from catalog.engine import Catalog
from catalog.errors import NotFound
from catalog.models import utcnow

__all__ = ["concept_key", "run_of_concept"]


def concept_key(provenance_key: str, concept: str) -> str:
    """The provenance key of a run copied for `concept` from the run with `provenance_key`."""
    return hashlib.sha256(f"{provenance_key}|concept:{concept}".encode()).hexdigest()


def run_of_concept(cat: Catalog, request: Any, run_id: int, circuit_id: int | None) -> tuple[int, int | None]:
    """The stored run to reuse for this request, as a run of the request's own concept.

    Args:
        cat: an open, writable catalog.
        request: the request (`ingest.pipeline.Request`: concept, ks, image set identity).
        run_id: the stored complete run with the request's provenance key (of any concept).
        circuit_id: that run's circuit of the request's k, or None.

    Returns:
        (run id, circuit id of this k or None): the same when the run is already the concept's;
        else the concept's copy of the run, stored now (one transaction) if it did not exist.
    """
    concept = request.concept
    with cat.reading() as s:
        existing = store.read_run(s, run_id)
        if existing.concept == concept:
            return run_id, circuit_id
        key = concept_key(existing.provenance_key, concept)
        copy = store.find_complete_run(s, key)
        if copy is None:
            matrices = store.read_run_matrices(s, run_id)
            media_rows = _read_media(s, existing)
    if copy is None:
        copy_id = _store_copy(cat, existing, concept, key, request, matrices, media_rows)
    else:
        copy_id = copy.id
    with cat.reading() as s:
        same = [c for c in store.find_circuits(s, run_id=copy_id) if tuple(c.k) == tuple(request.ks) and not c.fixed]
    return copy_id, (same[0].id if same else None)


def _read_media(s: Any, existing: Any) -> tuple[list[int], list, list[tuple[int, int, int, bytes]]]:
    """The run's example-image ids (set order), neuron patches and image thumbnails, to copy."""
    from sqlalchemy import select

    from catalog import media

    try:
        image_ids = media.example_image_ids(s, existing.concept_id, existing.image_set_sha256)
    except NotFound:  # a run stored without its images: nothing to copy
        return [], [], []
    patches = [p for group in media.read_patches(s, run_id=existing.id, with_png=True).values() for p in group]
    T = media.ImageThumbnail
    thumbs = [
        (int(r[0]), int(r[1]), int(r[2]), bytes(r[3]))
        for r in s.execute(
            select(T.example_image_id, T.width, T.height, T.data).where(T.example_image_id.in_(image_ids))
        )
    ]
    return image_ids, patches, thumbs


def _copy_media(s: Any, run_id: int, concept_id: int, image_set_sha256: str, media_rows: tuple) -> None:
    """The copied run's patches and thumbnails, pointing at the new concept's example images."""
    from dataclasses import replace

    from catalog import media

    old_ids, patches, thumbs = media_rows
    if not old_ids:
        return
    new_of = dict(zip(old_ids, media.example_image_ids(s, concept_id, image_set_sha256)))  # same positions
    media.write_patches(
        s, run_id, [replace(p, example_image_id=new_of[p.example_image_id]) for p in patches], replace=False
    )
    media.write_image_thumbnails(s, [(new_of[i], w, h, png) for i, w, h, png in thumbs])


def _store_copy(
    cat: Catalog, existing: Any, concept: str, key: str, request: Any, matrices: list, media_rows: tuple
) -> int:
    with cat.writing() as s:  # the whole copy or nothing
        model = store.ensure_model(
            s,
            name=existing.model,
            architecture=existing.architecture,
            weights_sha256=existing.weights_sha256,
            layers=list(zip(existing.layer_names, existing.widths)),
        )
        concept_id = store.ensure_concept(s, concept)
        store.write_example_images(s, concept_id, request.image_set_sha256, list(request.images))
        try:
            run_id = store.write_run(
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
        _copy_media(s, run_id, concept_id, existing.image_set_sha256, media_rows)
        return run_id
