"""Circuits of another size (or with anchored layers) from a stored run, without the model.

`refine` reads a run's stored matrices and searches again (docs/method.md, "Circuit search"): no model, no GPU. The same
run and k give back the stored circuit. `run_preprocessing` tells a later command how a circuit's
run fed its images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from catalog import store
from catalog.engine import Catalog
from catalog.sizes import k_per_layer
from ingest.pipeline import IngestError
from ingest.stored_model import UntrustedModel, is_zoo_model

if TYPE_CHECKING:
    from ingest.zoo.preprocessing import Preprocessing

__all__ = ["refine", "run_preprocessing", "stored_preprocessing"]


def refine(
    cat: Catalog,
    run_id: int,
    k: int | Sequence[int],
    *,
    fixed: Mapping[str | int, Sequence[int]] | None = None,
    max_sweeps: int = 50,
):
    """Make a new circuit of another k from a run's stored edges alone (no model, no GPU).

    Args:
        cat: an open, writable catalog.
        run_id: a complete run.
        k: neurons per layer: one int, or one per layer of the run.
        fixed: anchored layers, layer name -> channels held fixed there (a layer index, negative
            from the end, is accepted too). Stored in the circuit's `fixed` keyed by layer name.
        max_sweeps: the most refinement sweeps.

    Returns:
        (circuit_id, Circuit).

    Raises:
        BadK: a bad k (`catalog.sizes`).
        IngestError: a fixed layer that is not one of the run's layers.
    """
    from ingest.cla.search import find_circuit

    with cat.reading() as s:
        run = store.read_run(s, run_id)
        matrices = store.read_run_matrices(s, run_id)
    ks = k_per_layer(k, run.layer_names, run.widths)
    by_index = None if fixed is None else _fixed_by_index(fixed, list(run.layer_names))
    circuit = find_circuit(matrices, ks, fixed=by_index, max_sweeps=max_sweeps)
    with cat.writing() as s:
        circuit_id = store.write_circuit(
            s,
            run_id=run_id,
            channels=circuit.channels,
            k=circuit.k,  # a fixed layer's k is its anchor count
            fixed=None if by_index is None else {run.layer_names[i]: list(c) for i, c in by_index.items()},
            sweeps=circuit.sweeps,
            converged=circuit.converged,
            objective_history=circuit.objective_history,
        )
    return circuit_id, circuit


def _fixed_by_index(fixed: Mapping[str | int, Sequence[int]], layer_names: list[str]) -> dict[int, list[int]]:
    """Anchors keyed by layer name (or index) -> keyed by the layer's index, as the search takes them."""
    out: dict[int, list[int]] = {}
    for key, chans in fixed.items():
        if isinstance(key, str):
            if key not in layer_names:
                raise IngestError(
                    f"fixed layer {key!r} is not a layer of this run: use one of {', '.join(layer_names)}"
                )
            i = layer_names.index(key)
        else:
            i = int(key) + (len(layer_names) if int(key) < 0 else 0)
            if not 0 <= i < len(layer_names):
                raise IngestError(f"fixed layer index {key} is out of range for {len(layer_names)} layers")
        if i in out:
            raise IngestError(f"layer {layer_names[i]!r} is fixed twice")
        out[i] = [int(c) for c in chans]
    return out


def run_preprocessing(
    cat: Catalog,
    circuit_id: int,
    *,
    input_size: int | str | None = None,
    resize: str | None = None,
    normalize: str | tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    channels: int | None = None,
) -> Preprocessing | None:
    """The preprocessing a circuit's run stored, with the given overrides; None when nothing is
    overridden (the caller then uses the run's own, e.g. `ablate(preprocessing=None)`)."""
    if (input_size, resize, normalize, channels) == (None, None, None, None):
        return None
    from ingest import zoo

    with cat.reading() as s:
        circ = store.read_circuit(s, circuit_id)
        stored = store.read_run(s, circ.run_id).params.get("preprocessing")
    if stored is None and not is_zoo_model(circ.model):  # never import a catalog's model code
        raise UntrustedModel(
            f"circuit {circuit_id}'s run stored no preprocessing and its model {circ.model!r} is user code, "
            "which is never imported from a catalog: ablate it without preprocessing overrides"
        )
    base = stored_preprocessing({"preprocessing": stored}, lambda: zoo.get_spec(circ.model).pp)
    return base.with_overrides(input_size=input_size, resize=resize, normalize=normalize, channels=channels)


def stored_preprocessing(run_params: Mapping, fallback: Callable[[], Preprocessing]) -> Preprocessing:
    """The preprocessing a run stored in its provenance (`params["preprocessing"]`); runs stored
    before it was recorded get `fallback()` (the model's own). The one place both `ablate` and
    `run_preprocessing` read it."""
    from ingest.zoo.preprocessing import Preprocessing

    stored = run_params.get("preprocessing")
    return fallback() if stored is None else Preprocessing.from_params(stored)
