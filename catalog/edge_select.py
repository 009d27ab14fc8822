"""Which entries of a dense score matrix become rows: a pair's top edges, a circuit's internal edges.

The catalog keeps every score in `run_matrix` (lossless blobs, `catalog.matrix_codec`); the `edge`
table holds only each pair's *top edges*, chosen here, so SQL over `edges_v` stays small. A
circuit's internal edges (both ends in the circuit) are stored with the circuit
(`circuit_edge`), also chosen here. NumPy only.

Top edges of a pair S (m sources × n destinations) with `top_k = K`: every source neuron's K
strongest outgoing edges and every destination neuron's K strongest incoming edges (the union),
leaving out exact zeros. Why per neuron rather than the pair's top 1 %: CLA scores are
heavy-tailed, so a global top fraction is taken almost entirely by a few hub neurons and most
neurons vanish from `edges_v`; per neuron, every neuron shows its strongest links in both
directions, which is what browsing a neuron's inputs and outputs needs. With K = 4 a googlenet
run (9 inception blocks) keeps ≤ 4 · Σ(C_i + C_{i+1}) = 38,784 of its 3.15 M edges (1.2 %).
Ties: the lower channel wins (deterministic).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from catalog.errors import CatalogError

__all__ = ["DEFAULT_TOP_K", "circuit_pairs", "top_edge_mask"]

DEFAULT_TOP_K = 4
"""Edges kept per source and per destination neuron of each pair (see the module docstring)."""


def top_edge_mask(matrix: np.ndarray, top_k: int) -> np.ndarray:
    """Which entries of one pair's matrix are its top edges.

    Args:
        matrix: (m, n) scores S[src channel, dst channel].
        top_k: edges kept per row and per column (≥ 0; 0 keeps nothing).

    Returns:
        (m, n) bool: the union of each row's and each column's `top_k` highest non-zero
        entries, ties going to the lower index.

    Raises:
        CatalogError: a negative `top_k`.
    """
    if top_k < 0:
        raise CatalogError(f"top_k must be 0 or more, got {top_k}")
    scores = np.asarray(matrix)
    if top_k == 0 or scores.size == 0:
        return np.zeros(scores.shape, dtype=bool)
    return _row_top(scores, top_k) | _row_top(scores.T, top_k).T


def _row_top(scores: np.ndarray, k: int) -> np.ndarray:
    """(m, n) bool: each row's k highest non-zero entries, ties to the lower column."""
    m, n = scores.shape
    if k >= n:
        return scores != 0
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]  # (m,) k-th highest per row
    above = scores > kth[:, None]
    # Entries equal to the k-th value fill the remaining places in column order.
    ties = scores == kth[:, None]
    room = k - above.sum(axis=1)  # (m,) ≥ 1
    keep = above | (ties & (np.cumsum(ties, axis=1) <= room[:, None]))
    return keep & (scores != 0)


def circuit_pairs(
    neuron_ids: Sequence[np.ndarray], matrices: Sequence[np.ndarray], channels: Sequence[Sequence[int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every internal edge of a circuit (both ends in it), zero scores included.

    Args:
        neuron_ids: per run layer, (C_i,) neuron ids indexed by channel.
        matrices: per adjacent pair i, S_i (C_i, C_{i+1}).
        channels: per run layer, the circuit's channels there.

    Returns:
        (src_neuron_ids, dst_neuron_ids, scores): (E,) int64, int64, float32 with
        E = Σ_i |C_i| · |C_{i+1}|, pair by pair, row-major over the sorted channels.
    """
    chosen = [np.sort(np.asarray(c, dtype=np.int64)) for c in channels]
    src, dst, score = [], [], []
    for i, scores in enumerate(matrices):
        a, b = chosen[i], chosen[i + 1]
        ids_a = np.asarray(neuron_ids[i], dtype=np.int64)[a]
        ids_b = np.asarray(neuron_ids[i + 1], dtype=np.int64)[b]
        src.append(np.repeat(ids_a, len(b)))
        dst.append(np.tile(ids_b, len(a)))
        score.append(np.asarray(scores, dtype=np.float32)[np.ix_(a, b)].reshape(-1))
    if not src:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(src), np.concatenate(dst), np.concatenate(score)
