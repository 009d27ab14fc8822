"""Small synthetic runs and circuits for tests that need rows in a catalog: the provenance every
such test would otherwise spell out, in one place. Values a test asserts on are passed explicitly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from catalog import store

STARTED = dt.datetime(2025, 1, 1)


def run_fields(key: str = "p" * 64, layer_names: Sequence[str] = ("l0", "l1"), **over: Any) -> dict[str, Any]:
    """`store.write_run`'s provenance keywords (all but model, concept and matrices) of a test run
    with provenance key `key`; `over` replaces any of them."""
    fields: dict[str, Any] = dict(
        layer_names=list(layer_names),
        params={},
        image_set_sha256="1" * 64,
        n_images=2,
        provenance_key=key,
        library_versions={},
        device="cpu",
        started_at=STARTED,
        seconds=1.0,
    )
    return fields | over


def write_run(s, model, concept_id: int, matrices: Sequence[np.ndarray], key: str = "p" * 64, **over: Any) -> int:
    """A complete run over all the model's layers (or `layer_names=`), through `store.write_run`;
    `over` also takes write_run's own keywords (`edge_top_k`, `replace`). Returns the run id."""
    names = over.pop("layer_names", [layer.name for layer in model.layers])
    return store.write_run(s, model=model, concept_id=concept_id, matrices=matrices, **run_fields(key, names, **over))


def write_circuit(
    s, run_id: int, channels: Sequence[Sequence[int]], *, fixed=None, sweeps: int = 1, history=(1.0,)
) -> int:
    """A circuit of the given channels per layer (k = their count), through `store.write_circuit`."""
    return store.write_circuit(
        s,
        run_id=run_id,
        channels=[list(c) for c in channels],
        k=[len(c) for c in channels],
        fixed=fixed,
        sweeps=sweeps,
        converged=True,
        objective_history=list(history),
    )
