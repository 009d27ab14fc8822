"""Writing synthetic runs and circuits into a catalog, for the catalog benches: the provenance a
bench run carries, in one place, so that every bench writes its runs and circuits alike."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from catalog import store

STARTED = dt.datetime(2025, 1, 1)


def run_fields(key: str, layer_names: Sequence[str], **over: Any) -> dict[str, Any]:
    """`store.write_run`'s provenance keywords for a synthetic run whose provenance key is `key`
    (the model, concept and matrices are the caller's); `over` replaces any of them."""
    fields: dict[str, Any] = dict(
        layer_names=list(layer_names),
        params={},
        image_set_sha256="0" * 64,
        n_images=8,
        provenance_key=key,
        library_versions={},
        device="cpu",
        started_at=STARTED,
        seconds=0.0,
    )
    return fields | over


def write_run(s, model, concept_id: int, key: str, matrices: Sequence[np.ndarray], **over: Any) -> int:
    """One complete synthetic run over the model's layers named by `over["layer_names"]` (default:
    all the model's layers, in order); returns its id."""
    names = over.pop("layer_names", [layer.name for layer in model.layers])
    return store.write_run(s, model=model, concept_id=concept_id, matrices=matrices, **run_fields(key, names, **over))


def write_circuits(s, run_id: int, channel_sets, k: int, *, sweeps: int = 1, history=(0.0,)) -> list[int]:
    """One circuit of `k` neurons per layer for each per-layer channel list; returns their ids."""
    return [
        store.write_circuit(
            s,
            run_id=run_id,
            channels=channels,
            k=[k] * len(channels),
            fixed=None,
            sweeps=sweeps,
            converged=True,
            objective_history=list(history),
        )
        for channels in channel_sets
    ]
