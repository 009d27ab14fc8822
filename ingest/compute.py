"""The model half of an ingest: CLA scores, the circuit search and thumbnails, without the catalog.

`ingest.pipeline` calls `compute` for a `Prepared` request whose run is not stored; the result is
plain data (`ingest.writer.ComputedRun`), so one process (or machine) can compute a run and
another can write it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from catalog.models import utcnow

if TYPE_CHECKING:
    from ingest.pipeline import Prepared

__all__ = ["ComputeFailed", "Progress", "Scores", "compute"]

Progress = Callable[[str, int, int], None]  # (stage, done, total)

Scores = Callable[["Prepared", "Callable[[int, int], None] | None"], list[np.ndarray]]
"""Computes a run's score matrices as `scores(prepared, on_batch)` (e.g. a contrast of two image sets)."""


def compute(prepared: Prepared, *, progress: Progress | None = None):
    """Run CLA, find the circuit and its neurons' thumbnails, without the catalog.

    Args:
        prepared: from `prepare`.
        progress: optional callback (stage, done, total).

    The run's duration counts from `prepared.started`; its scores are `prepared.scores`'s, or CLA
    of `prepared.x` (`ingest.cla.attribute`) when that is None.

    Returns:
        An `ingest.writer.ComputedRun` to give to `ingest.writer.store_computed`.

    Raises:
        ComputeFailed: the computation failed (it carries the failed run row to record).
    """
    from ingest import thumbnails
    from ingest.cla.attribution import attribute
    from ingest.cla.search import find_circuit
    from ingest.writer import ComputedRun, RunFailure, class_labels, describe

    t0 = prepared.started
    run_fields = {**prepared.run_fields, "started_at": utcnow()}
    config, loaded, layers, x = prepared.config, prepared.loaded, prepared.layers, prepared.x
    on_batch = None if progress is None else (lambda done, total: progress("attribution", done, total))
    try:
        if prepared.scores is not None:
            matrices = prepared.scores(prepared, on_batch)
        else:
            matrices = attribute(
                loaded.module,
                layers,
                x,
                batch_size=config.batch_size,
                device=run_fields["device"],
                progress=on_batch,
                tokens=config.tokens,
            )
        circuit = find_circuit(matrices, prepared.ks, max_sweeps=config.max_sweeps)
        seconds = time.perf_counter() - t0
        patches = thumbnails.neuron_patches(
            loaded.module,
            layers,
            x,
            circuit.channels,
            mean=prepared.preprocessing.mean,
            std=prepared.preprocessing.std,
            progress=progress,
        )
        thumbs = thumbnails.example_thumbnails(prepared.image_set.images)
    except (Exception, KeyboardInterrupt) as exc:
        failure = RunFailure(prepared.model_fields, config.concept, run_fields, time.perf_counter() - t0, describe(exc))
        raise ComputeFailed(failure) from exc
    image_set = prepared.image_set
    last = layers[-1]
    names = class_labels(loaded.spec.labels, loaded.spec.layers, last, dict(prepared.model_fields["layers"])[last])
    return ComputedRun(
        model_fields=prepared.model_fields,
        concept=config.concept,
        run_fields=run_fields,
        images=tuple(zip(image_set.sha256s, image_set.sources)),
        ks=tuple(prepared.ks),
        matrices=tuple(matrices),
        circuit=circuit,
        seconds=seconds,
        force=config.force,
        patches=tuple(patches),
        thumbnails=tuple(thumbs),
        skipped=tuple(image_set.skipped),
        class_names=names or (),
    )


class ComputeFailed(Exception):
    """Internal: a computation failed; `failure` is the row to record, `__cause__` the error."""

    def __init__(self, failure: Any):
        super().__init__(failure.error)
        self.failure = failure
