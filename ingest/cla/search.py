"""Circuit search over stored CLA score matrices (docs/method.md, "Circuit search").

A circuit is k neurons per layer. The search needs only the matrices `S_0 … S_{T-1}` (`S_i` has
shape `[C_i, C_{i+1}]`), so a circuit of another k can be made later from the catalog alone,
without the model. It is pure NumPy.

1. Initial selection: layer i takes the top-k of `Σ_n S_i[m,n] + Σ_p S_{i-1}[p,m]`.
2. Refinement sweeps, i = 0 … T: layer i is re-selected as the k neurons maximising
   `Σ_{n∈C_{i+1}} S_i[m,n] + Σ_{p∈C_{i-1}} S_{i-1}[p,m]` given its current neighbours. Because
   the objective `Σ_i Σ_{m∈C_i, n∈C_{i+1}} S_i[m,n]` is linear in layer i's choice, each step is an
   exact maximisation and the objective never decreases. Sweeps repeat until one changes nothing
   (converged) or `max_sweeps` is reached.
3. Ties go to the lower channel index, so the result is deterministic.
4. Anchoring: `fixed` layers keep the given channels and are never re-selected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from catalog.errors import CircuitsError

__all__ = ["Circuit", "CircuitSearchError", "CircuitSizeError", "circuit_objective", "find_circuit"]


class CircuitSearchError(CircuitsError):
    """The inputs of a circuit search are inconsistent (matrix shapes, k, fixed channels)."""


class CircuitSizeError(CircuitSearchError):
    """A requested circuit size k does not fit a layer."""


@dataclass(frozen=True)
class Circuit:
    """The result of a circuit search.

    Attributes:
        channels: per layer (in layer order), the chosen channel indices, ascending.
        objective_history: the objective after the initial selection, then after every sweep.
        sweeps: how many refinement sweeps ran (the last one changed nothing when converged).
        converged: True when a whole sweep changed nothing before `max_sweeps` ran out.
    """

    channels: list[list[int]]
    objective_history: list[float]
    sweeps: int
    converged: bool

    @property
    def objective(self) -> float:
        """The final objective `Σ_i Σ_{m∈C_i, n∈C_{i+1}} S_i[m,n]` (the catalog's `objective`)."""
        return self.objective_history[-1]

    @property
    def k(self) -> list[int]:
        """Neurons per layer."""
        return [len(c) for c in self.channels]


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The k indices with the highest score, ties to the lower index, returned ascending."""
    # lexsort sorts by the last key first: primary key -score, secondary key the index.
    order = np.lexsort((np.arange(scores.shape[0]), -scores))
    return np.sort(order[:k])


def _check_matrices(matrices: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(matrices) == 0:
        raise CircuitSearchError("no score matrices given: a circuit needs at least two layers (one matrix)")
    mats = []
    for i, s in enumerate(matrices):
        a = np.asarray(s)
        if a.ndim != 2:
            raise CircuitSearchError(f"score matrix {i} has shape {a.shape}: expected [C_{i}, C_{i + 1}]")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise CircuitSearchError(f"score matrix {i} has shape {a.shape}: a layer has no channels")
        if not np.all(np.isfinite(a)):
            raise CircuitSearchError(f"score matrix {i} contains NaN or infinite values: recompute the run")
        mats.append(a.astype(np.float64, copy=False))  # sums in float64: stable objective history
    for i in range(len(mats) - 1):
        if mats[i].shape[1] != mats[i + 1].shape[0]:
            raise CircuitSearchError(
                f"score matrices do not chain: matrix {i} has {mats[i].shape[1]} columns "
                f"(layer {i + 1}) but matrix {i + 1} has {mats[i + 1].shape[0]} rows"
            )
    return mats


def _check_k(k: int | Sequence[int], widths: list[int]) -> list[int]:
    n_layers = len(widths)
    if isinstance(k, (int, np.integer)):
        ks = [int(k)] * n_layers
    else:
        ks = [int(v) for v in k]
        if len(ks) != n_layers:
            raise CircuitSearchError(f"k has {len(ks)} entries but the matrices describe {n_layers} layers")
    return ks


def _check_fixed(fixed: Mapping[int, Sequence[int]] | None, widths: list[int]) -> dict[int, np.ndarray]:
    n_layers = len(widths)
    out: dict[int, np.ndarray] = {}
    for raw_layer, chans in (fixed or {}).items():
        layer = int(raw_layer)
        if layer < 0:
            layer += n_layers  # -1 is the last layer, e.g. the class logits
        if not 0 <= layer < n_layers:
            raise CircuitSearchError(f"fixed layer index {raw_layer} is out of range for {n_layers} layers")
        if layer in out:
            raise CircuitSearchError(f"layer {layer} is fixed twice")
        arr = np.asarray(sorted(int(c) for c in chans), dtype=np.int64)
        if arr.size == 0:
            raise CircuitSearchError(f"fixed layer {layer} has no channels: give at least one")
        if arr.size != np.unique(arr).size:
            raise CircuitSearchError(f"fixed layer {layer} repeats a channel: {arr.tolist()}")
        if arr[0] < 0 or arr[-1] >= widths[layer]:
            raise CircuitSearchError(
                f"fixed channels of layer {layer} must lie in 0…{widths[layer] - 1}: got {arr.tolist()}"
            )
        out[layer] = arr
    return out


def _local_score(mats: list[np.ndarray], chosen: list[np.ndarray], i: int) -> np.ndarray:
    """Each neuron m of layer i scored against the current neighbours. (C_i,)"""
    width = mats[i].shape[0] if i < len(mats) else mats[i - 1].shape[1]
    score = np.zeros(width, dtype=np.float64)
    if i < len(mats):
        score += mats[i][:, chosen[i + 1]].sum(axis=1)
    if i > 0:
        score += mats[i - 1][chosen[i - 1], :].sum(axis=0)
    return score


def circuit_objective(matrices: Sequence[np.ndarray], channels: Sequence[Sequence[int] | np.ndarray]) -> float:
    """`Σ_i Σ_{m∈C_i, n∈C_{i+1}} S_i[m,n]` for a given circuit.

    Args:
        matrices: the score matrices `S_i`, shape `[C_i, C_{i+1}]`.
        channels: per layer, the circuit's channels (one list per layer, len(matrices) + 1).

    Returns:
        The objective as a Python float (summed in float64).
    """
    total = 0.0
    for i, s in enumerate(matrices):
        a = np.asarray(s, dtype=np.float64)
        total += float(
            a[np.ix_(np.asarray(channels[i], dtype=np.int64), np.asarray(channels[i + 1], dtype=np.int64))].sum()
        )
    return total


def find_circuit(
    matrices: Sequence[np.ndarray],
    k: int | Sequence[int],
    *,
    fixed: Mapping[int, Sequence[int]] | None = None,
    max_sweeps: int = 50,
) -> Circuit:
    """Find a circuit of k neurons per layer that maximises the summed CLA scores between layers.

    Args:
        matrices: `S_0 … S_{T-1}`, `S_i` of shape `[C_i, C_{i+1}]` (layer order, raw scores).
        k: neurons per layer: one int for every layer, or one per layer (T + 1 values).
        fixed: layer index → channels held fixed there (anchoring). Their count is that layer's k
            (a per-layer k entry for a fixed layer is ignored). Negative indices count from the end.
        max_sweeps: the most refinement sweeps to run (0 returns the initial selection).

    Returns:
        A `Circuit` with ascending channels per layer, the objective history, the sweep count and
        whether a sweep that changed nothing was reached.

    Raises:
        CircuitSearchError: matrices that are not 2-D, do not chain or hold NaN; a wrong number of
            k values; fixed channels out of range; a negative `max_sweeps`.
        CircuitSizeError: k < 1, or k larger than a layer's width.
    """
    mats = _check_matrices(matrices)
    widths = [m.shape[0] for m in mats] + [mats[-1].shape[1]]
    ks = _check_k(k, widths)
    anchors = _check_fixed(fixed, widths)
    if max_sweeps < 0:
        raise CircuitSearchError(f"max_sweeps must be ≥ 0, got {max_sweeps}")
    for i, (ki, width) in enumerate(zip(ks, widths)):
        if i in anchors:
            continue
        if ki < 1:
            raise CircuitSizeError(f"k must be at least 1, got k={ki} for layer {i}")
        if ki > width:
            raise CircuitSizeError(f"k={ki} is larger than layer {i}, which has {width} channels: choose k ≤ {width}")

    n_layers = len(widths)
    chosen: list[np.ndarray] = []
    for i in range(n_layers):
        if i in anchors:
            chosen.append(anchors[i])
            continue
        total = np.zeros(widths[i], dtype=np.float64)
        if i < len(mats):
            total += mats[i].sum(axis=1)
        if i > 0:
            total += mats[i - 1].sum(axis=0)
        chosen.append(_top_k(total, ks[i]))

    objective = [circuit_objective(mats, chosen)]
    sweeps = 0
    converged = False
    while sweeps < max_sweeps:
        sweeps += 1
        changed = False
        for i in range(n_layers):
            if i in anchors:
                continue
            new = _top_k(_local_score(mats, chosen, i), ks[i])
            if not np.array_equal(new, chosen[i]):
                chosen[i] = new
                changed = True
        objective.append(circuit_objective(mats, chosen))
        if not changed:
            converged = True
            break

    return Circuit(
        channels=[[int(c) for c in layer] for layer in chosen],
        objective_history=objective,
        sweeps=sweeps,
        converged=converged,
    )
