"""The write at the end of an ingest: one short transaction per computed run.

`ingest.pipeline` computes a run without touching the catalog (`ComputedRun`: plain data, so a
worker process or machine can compute it and another process can write it), then `store_computed`
writes the model, concept, images, run, edges, circuit and thumbnails in one transaction
(`Catalog.writing`: a DuckDB file is held only for that transaction, and waited for while another
process holds it). When the run ends at the model's class layer, the same transaction labels that
layer's neurons with the model's class names (`class_labels`), so every reader (the web view
included) shows `_fc:285 Egyptian cat` from the catalog alone, with no model code.

Concurrent writers of the same run: the run claims its provenance key (`catalog.store.write_run`);
the writer that loses reuses the winner's run in the same transaction, adding its circuit only if
the run has no circuit of that k yet (under a per-run lock on PostgreSQL, so two losers do not add
two). Failures leave a `failed` run row saying what happened (`record_failure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from catalog import store
from catalog.engine import Catalog
from catalog.errors import CatalogLocked
from catalog.locks import Lock, lock
from catalog.models import utcnow

__all__ = [
    "ComputedRun",
    "RunFailure",
    "add_circuit_once",
    "class_labels",
    "label_class_layer",
    "record_failure",
    "store_computed",
]


@dataclass(frozen=True)
class RunFailure:
    """What a failed run row records: the run's identity and the error (picklable)."""

    model_fields: dict[str, Any]  # ensure_model's keyword arguments
    concept: str
    run_fields: dict[str, Any]  # write_run's provenance keyword arguments (no matrices)
    seconds: float
    error: str


@dataclass(frozen=True)
class ComputedRun:
    """A run computed without the catalog, ready to be written (picklable: no model, no torch).

    Attributes:
        model_fields: `catalog.store.ensure_model` keyword arguments.
        concept: the concept name.
        run_fields: `catalog.store.write_run` provenance keyword arguments.
        images: (image sha256, source) per image of the set, in order.
        ks: circuit neurons per layer.
        matrices: S_i (C_i, C_{i+1}) float32 per adjacent layer pair.
        circuit: the circuit found in them (`ingest.cla.search.Circuit`).
        seconds: how long the computation took.
        force: store a new run even when one with the same provenance key exists.
        patches, thumbnails: the circuit neurons' example patches and the images' thumbnails
            (`ingest.thumbnails`), stored with a new run.
        skipped: (path, reason) of unreadable image files.
        class_names: labels of the run's last layer's neurons by channel (`class_labels`: the
            model's class names when that layer is its class layer), or () for none.
    """

    model_fields: dict[str, Any]
    concept: str
    run_fields: dict[str, Any]
    images: tuple[tuple[str, str], ...]
    ks: tuple[int, ...]
    matrices: tuple[np.ndarray, ...]
    circuit: Any
    seconds: float
    force: bool = False
    patches: tuple[Any, ...] = ()
    thumbnails: tuple[tuple[int, int, bytes], ...] = ()
    skipped: tuple[tuple[str, str], ...] = field(default=())
    class_names: tuple[str, ...] = ()

    @property
    def provenance_key(self) -> str:
        return self.run_fields["provenance_key"]

    def failure(self, exc: BaseException) -> RunFailure:
        """The failed row to record when writing this run fails with `exc`."""
        return RunFailure(self.model_fields, self.concept, self.run_fields, self.seconds, describe(exc))


def class_labels(labels: Sequence[str] | None, hidden: Sequence[str], layer: str, width: int) -> tuple[str, ...] | None:
    """A model's class names as the labels of `layer`, when it is the model's class layer.

    The rule: the model declares labels, `layer` is not one of its hidden (default CLA) layers,
    and it has one channel per label.

    Args:
        labels: the model spec's class names by logit index (None: it has none).
        hidden: the spec's default CLA layers (never the logits).
        layer: the run's last layer.
        width: its number of channels.
    """
    if not labels or layer in hidden or len(labels) != width:
        return None
    return tuple(str(v) for v in labels)


def label_class_layer(s: Session, model_id: int, layer: str, names: Sequence[str], *, replace: bool = True) -> int:
    """Label `layer`'s neurons with class names, in the caller's transaction.

    Args:
        s: a session in a write transaction.
        model_id: the catalogued model.
        layer: its class layer (one neuron per name).
        names: the class names by logit index.
        replace: False keeps labels already stored on the layer (e.g. from `--classes FILE`).

    Returns:
        The number of neurons labelled (0 when labels were kept).
    """
    if not replace and store.neuron_labels(s, model_id, layer):
        return 0
    return store.label_neurons(s, model_id, layer, list(names))


def describe(exc: BaseException) -> str:
    """A failed run's `error` text."""
    text = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
    return text[:2000]


def store_computed(cat: Catalog, computed: ComputedRun) -> tuple[int, int, bool, tuple[tuple[int, ...], ...]]:
    """Write a computed run and its circuit in one transaction (or reuse the stored run).

    Args:
        cat: a writable catalog.
        computed: from `ingest.pipeline.compute`.

    Returns:
        (run id, circuit id, reused, circuit channels): reused is True when a complete run with the
        same provenance key was stored first (by another process); its circuit of this k is
        returned, or this computation's circuit is added to it.

    Raises:
        CatalogLocked: a DuckDB file stayed held by another process (`$CIRCUITS_LOCK_WAIT`).
        Any error of the write, after a failed run row is recorded.
    """
    from ingest import thumbnails

    circuit = computed.circuit
    try:
        with cat.writing() as s:  # one transaction: the whole run or nothing
            model = store.ensure_model(s, **computed.model_fields)
            concept_id = store.ensure_concept(s, computed.concept)
            store.write_example_images(s, concept_id, computed.run_fields["image_set_sha256"], list(computed.images))
            try:
                run_id = store.write_run(
                    s,
                    model=model,
                    concept_id=concept_id,
                    matrices=list(computed.matrices),
                    seconds=computed.seconds,
                    replace=computed.force,
                    **computed.run_fields,
                )
            except store.RunExists as won:  # another writer stored this run first: reuse it
                circuit_id, channels = add_circuit_once(s, won.run_id, computed.ks, circuit)
                return won.run_id, circuit_id, True, channels
            circuit_id = _write_circuit(s, run_id, computed.ks, circuit)
            if computed.class_names:  # the model's own names never replace labels a user gave
                layer = computed.run_fields["layer_names"][-1]
                label_class_layer(s, model.id, layer, computed.class_names, replace=False)
            if computed.patches or computed.thumbnails:
                thumbnails.store_thumbnails(
                    s,
                    run_id=run_id,
                    model_id=model.id,
                    concept_id=concept_id,
                    image_set_sha256=computed.run_fields["image_set_sha256"],
                    patches=list(computed.patches),
                    thumbnails=list(computed.thumbnails),
                )
    except CatalogLocked:
        raise  # nothing can be written now, not even the failed row
    except (Exception, KeyboardInterrupt) as exc:
        record_failure(cat, computed.failure(exc))
        raise
    return run_id, circuit_id, False, tuple(tuple(int(c) for c in chans) for chans in circuit.channels)


def add_circuit_once(
    s: Session, run_id: int, ks: Sequence[int], circuit: Any
) -> tuple[int, tuple[tuple[int, ...], ...]]:
    """The run's circuit of this k (not anchored), written from `circuit` if it has none yet.

    On PostgreSQL a per-run lock makes the check and the write one step between processes.

    Returns:
        (circuit id, channels per layer).
    """
    lock(s, Lock.run_circuits, run_id)
    same = [c for c in store.find_circuits(s, run_id=run_id) if list(c.k) == list(ks) and not c.fixed]
    if same:
        return same[0].id, tuple(tuple(c) for c in same[0].channels)
    circuit_id = _write_circuit(s, run_id, ks, circuit)
    return circuit_id, tuple(tuple(int(c) for c in chans) for chans in circuit.channels)


def _write_circuit(s: Session, run_id: int, ks: Sequence[int], circuit: Any) -> int:
    return store.write_circuit(
        s,
        run_id=run_id,
        channels=circuit.channels,
        k=list(ks),
        fixed=None,
        sweeps=circuit.sweeps,
        converged=circuit.converged,
        objective_history=circuit.objective_history,
    )


def record_failure(cat: Catalog, failure: RunFailure) -> None:
    """Leave a `failed` run row saying what happened; never raises (the original error matters)."""
    try:
        with cat.writing() as s:
            model = store.ensure_model(s, **failure.model_fields)
            concept_id = store.ensure_concept(s, failure.concept)
            fields = {**failure.run_fields, "started_at": failure.run_fields.get("started_at") or utcnow()}
            store.record_failed_run(
                s, model=model, concept_id=concept_id, seconds=failure.seconds, error=failure.error, **fields
            )
    except Exception:  # the catalog itself may be what failed
        pass
