"""Circuit overlap: pairwise matrices over circuits, and the neurons several circuits share.

Three metrics (`METRICS`):

* ``jaccard`` — |A ∩ B| / |A ∪ B| over the circuits' neurons (a neuron is a (layer, channel) of
  the model, so circuits of different concepts of one model compare directly);
* ``shared`` — |A ∩ B|, the number of neurons in both;
* ``weighted`` — weighted Jaccard Σ_e min(w_A(e), w_B(e)) / Σ_e max(w_A(e), w_B(e)) over neuron
  pairs e, where w_X(e) is the CLA score of edge e in X's run when both ends are in X (X's
  *internal* edges) and 0 otherwise, divided by the sum of X's internal scores. Raw scores differ
  in scale from concept to concept; after the division each circuit's weights sum to 1, so the
  metric compares where each circuit's attribution sits rather than how strong its run was.
  A circuit whose internal edges all score 0 has no weights: its row is NaN (1 on the diagonal).

Each query is a handful of SQL statements returning Arrow (internal edges come from
`circuit_edge`, stored with each circuit); the arithmetic is NumPy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from sqlalchemy.orm import Session

from catalog import pg_copy
from catalog.errors import CircuitsError
from catalog.sql import query_arrow
from queries.graphs import column
from queries.resolve import CircuitChoice, choice_notes, concept_circuits, resolve_model

__all__ = [
    "DEFAULT_TOP",
    "MAX_OVERLAP_CIRCUITS",
    "METRICS",
    "OverlapMatrix",
    "SharedNeuron",
    "SharedNeurons",
    "circuit_members",
    "internal_edges",
    "jaccard_matrix",
    "overlap_matrix",
    "overlap_of_circuits",
    "shared_neurons",
    "weighted_jaccard_matrix",
]

METRICS = ("jaccard", "shared", "weighted")
DEFAULT_TOP = 50
"""Concepts in `overlap_matrix` when none are named: a 50-column table is about what a terminal shows."""
MAX_OVERLAP_CIRCUITS = 2000
PROGRESS_FROM = 200  # matrices this large take about a second or more: `overlap_matrix(progress=...)` says so
"""The largest matrix computed without `force`: 4 M cells, ~32 MB per float64 matrix and tens of MB of
table text; every step's memory is proportional to this (plus the circuits' neurons and edges)."""


@dataclass(frozen=True)
class OverlapMatrix:
    """A symmetric matrix over circuits.

    Attributes:
        metric: one of `METRICS`.
        model: the model name.
        labels: one label per circuit (its concept name).
        circuit_ids: the circuits, in matrix order.
        values: (N, N) float64; NaN where undefined (see the module docstring).
        notes: lines to show the user (e.g. which circuit was chosen for a concept).
    """

    metric: str
    model: str
    labels: tuple[str, ...]
    circuit_ids: tuple[int, ...]
    values: np.ndarray
    notes: tuple[str, ...] = ()

    def rows(self) -> list[dict[str, object]]:
        """One dict per circuit: ``concept``, ``circuit``, then one column per concept."""
        out = []
        cast = int if self.metric == "shared" else lambda v: round(v, 4)
        for label, cid, values in zip(self.labels, self.circuit_ids, self.values.tolist()):  # Python floats: fast
            row: dict[str, object] = {"concept": label, "circuit": cid}
            row.update(zip(self.labels, [None if v != v else cast(v) for v in values]))  # v != v: NaN
            out.append(row)
        return out


def circuit_members(session: Session, circuit_ids: Sequence[int]) -> pa.Table:
    """Neurons of the given circuits, one query.

    Returns:
        Columns ``circuit_id``, ``neuron_id``, ``layer``, ``position``, ``channel``.
    """
    return query_arrow(
        session,
        "SELECT cn.circuit_id AS circuit_id, cn.neuron_id AS neuron_id, l.name AS layer, "
        "l.position AS position, n.channel AS channel FROM circuit_neuron cn "
        "JOIN neuron n ON n.id = cn.neuron_id JOIN layer l ON l.id = n.layer_id "
        "WHERE cn.circuit_id = ANY(:ids) ORDER BY cn.circuit_id, l.position, n.channel",
        {"ids": [int(c) for c in circuit_ids]},
    )


def internal_edges(session: Session, circuit_ids: Sequence[int]) -> pa.Table:
    """Every circuit's internal edges (both ends in the circuit) with their scores.

    One query on `circuit_edge`, where each circuit's internal edges are stored with it (Arrow on
    DuckDB; on PostgreSQL the rows packed into one value, `catalog.pg_copy.select_columns`).

    Returns:
        Columns ``circuit_id``, ``src_neuron_id``, ``dst_neuron_id`` (int64), ``score`` (float32).
    """
    ids = [int(c) for c in circuit_ids]
    names = ("circuit_id", "src_neuron_id", "dst_neuron_id", "score")
    if session.get_bind().dialect.name == "postgresql":  # packed server-side: ~10x faster than rows
        id_list = ",".join(map(str, ids))
        query = f"SELECT {', '.join(names)} FROM circuit_edge WHERE circuit_id = ANY(ARRAY[{id_list}]::integer[])"
        columns = pg_copy.select_columns(session, query, list(zip(names, (">i4", ">i4", ">i4", ">f4"))))
    else:
        table = query_arrow(
            session, f"SELECT {', '.join(names)} FROM circuit_edge WHERE circuit_id = ANY(:ids)", {"ids": ids}
        )
        columns = [table.column(name).to_numpy(zero_copy_only=False) for name in names]
    dtypes = (np.int64, np.int64, np.int64, np.float32)
    return pa.table({name: np.asarray(c, dtype=t) for name, c, t in zip(names, columns, dtypes)})


def jaccard_matrix(index: np.ndarray, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Shared counts and Jaccard between sets given as (set index, item) pairs.

    Memory is the (n, n) result plus O(pairs), whatever the number of distinct items: the counts
    come from the pairs of sets that share each item (`_pair_min_sums`), not from a dense
    sets × items incidence matrix.

    Args:
        index: (M,) set index in [0, n) of each pair.
        items: (M,) item id of each pair (pairs are distinct).
        n: number of sets.

    Returns:
        (shared, jaccard): (n, n) float64 each; jaccard of two empty sets is NaN.
    """
    index = np.asarray(index, dtype=np.int64)
    size = np.bincount(index, minlength=n).astype(np.float64)  # (n,)
    shared = _pair_min_sums(index, np.asarray(items, dtype=np.int64), np.ones(len(index)), n)
    shared[np.diag_indices(n)] = size  # exact: sums of ones in float64
    union = size[:, None] + size[None, :] - shared
    with np.errstate(invalid="ignore", divide="ignore"):
        jaccard = np.where(union > 0, shared / np.where(union > 0, union, 1), np.nan)
    return shared, jaccard


def _pair_min_sums(index: np.ndarray, keys: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """(n, n) symmetric: Σ over keys held by both sets a ≠ b of min(w_a(key), w_b(key)); 0 on the
    diagonal. Memory: the result, O(M) and chunks of at most 2^22 pairs."""
    order = np.argsort(keys, kind="stable")  # entries sharing a key become contiguous
    k, s, w = keys[order], index[order], w[order]
    # Pair each entry with the one d places later, d = 1, 2, …, among the entries whose key run
    # still has one there (those with the most left come first).
    run_start = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if len(k) else np.zeros(0, np.int64)
    run_end = np.r_[run_start[1:], len(k)]
    left = np.repeat(run_end, run_end - run_start) - np.arange(len(k)) - 1  # entries after each in its run
    by_left = np.argsort(-left, kind="stable")
    n_active = np.searchsorted(-left[by_left], -np.arange(1, int(left.max(initial=0)) + 1), side="right")
    min_sum = np.zeros(n * n, dtype=np.float64)
    cells: list[np.ndarray] = []
    mins: list[np.ndarray] = []
    for d, count in enumerate(n_active, start=1):
        at = by_left[:count]
        cells.append(s[at] * n + s[at + d])
        mins.append(np.minimum(w[at], w[at + d]))
        if sum(len(c) for c in cells) > 1 << 22 or d == len(n_active):  # bounded memory
            min_sum += np.bincount(np.concatenate(cells), weights=np.concatenate(mins), minlength=n * n)
            cells, mins = [], []
    pair_min = min_sum.reshape(n, n)
    return pair_min + pair_min.T  # each pair was counted once, in either orientation


def weighted_jaccard_matrix(index: np.ndarray, keys: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """Weighted Jaccard between sets of weighted items, each set's weights normalised to sum 1.

    Args:
        index: (M,) set index in [0, n) of each entry.
        keys: (M,) int64 item key (e.g. an edge's src·2^32 + dst); distinct within a set.
        scores: (M,) non-negative weights.
        n: number of sets.

    Returns:
        (n, n) float64: Σ min / Σ max over items; diagonal 1; NaN for a set with no weight.
    """
    scores = np.asarray(scores, dtype=np.float64)
    totals = np.bincount(index, weights=scores, minlength=n)  # (n,)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = scores / totals[index]
    pair_min = _pair_min_sums(index, keys, w, n)
    has = totals > 0
    # Σ max = Σ w_a + Σ w_b − Σ min = 2 − Σ min for two non-empty sets.
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(has[:, None] & has[None, :], pair_min / (2.0 - pair_min), np.nan)
    np.fill_diagonal(out, 1.0)
    return out


def overlap_of_circuits(session: Session, circuit_ids: Sequence[int], metric: str = "jaccard") -> np.ndarray:
    """The (N, N) overlap matrix of the given circuits.

    Args:
        session: the caller's session.
        circuit_ids: the circuits (any models; neuron ids are per model, so circuits of
            different models share nothing).
        metric: one of `METRICS`.

    Returns:
        (N, N) float64 in the order of `circuit_ids`.

    Raises:
        CircuitsError: unknown metric, or a circuit given twice.
    """
    if metric not in METRICS:
        raise CircuitsError(f"unknown overlap metric {metric!r}: use one of {', '.join(METRICS)}")
    ids = [int(c) for c in circuit_ids]
    if len(set(ids)) != len(ids):
        raise CircuitsError("each circuit may appear once in an overlap matrix")
    if not ids:
        return np.zeros((0, 0), dtype=np.float64)
    lookup = np.full(max(ids) + 1, -1, dtype=np.int64)  # circuit id → matrix row
    lookup[ids] = np.arange(len(ids))
    if metric == "weighted":
        edges = internal_edges(session, ids)
        keys = (column(edges, "src_neuron_id", np.int64) << 32) | column(edges, "dst_neuron_id", np.int64)
        index = lookup[column(edges, "circuit_id", np.int64)]
        return weighted_jaccard_matrix(index, keys, column(edges, "score", np.float64), len(ids))
    members = query_arrow(
        session,
        "SELECT circuit_id, neuron_id FROM circuit_neuron WHERE circuit_id = ANY(:ids)",
        {"ids": ids},
    )
    shared, jaccard = jaccard_matrix(
        lookup[column(members, "circuit_id", np.int64)], column(members, "neuron_id", np.int64), len(ids)
    )
    return shared if metric == "shared" else jaccard


def overlap_matrix(
    session: Session,
    model: str,
    concepts: Sequence[str] | None = None,
    metric: str = "jaccard",
    *,
    top: int | None = DEFAULT_TOP,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> OverlapMatrix:
    """The pairwise overlap of a model's concept circuits.

    Args:
        session: the caller's session.
        model: model name (``NAME@SHA256PREFIX`` when several weights share it).
        concepts: the concepts, in matrix order; None means the model's concepts with a circuit,
            by name (at most `top` of them). Each concept is represented by its newest circuit of
            its newest complete run.
        metric: one of `METRICS`.
        top: without `concepts`, keep the `top` concepts whose circuits are newest (a note says
            how many there are); None: every concept.
        force: compute a matrix over more than `MAX_OVERLAP_CIRCUITS` circuits.
        progress: called with one line before a matrix of `PROGRESS_FROM` or more circuits is
            computed (what and how big), e.g. to tell a terminal user it is under way.

    Returns:
        The matrix, with a note for every concept that had several circuits.

    Raises:
        NotFound: unknown model or a concept without a circuit on it.
        CircuitsError: unknown metric, no circuits, top below 1, or a matrix above
            `MAX_OVERLAP_CIRCUITS` circuits without `force`.
    """
    if metric not in METRICS:
        raise CircuitsError(f"unknown overlap metric {metric!r}: use one of {', '.join(METRICS)}")
    if top is not None and top < 1:
        raise CircuitsError(f"`top=` must be at least 1, got {top}")
    names = None if concepts is None else list(dict.fromkeys(concepts))
    chosen = concept_circuits(session, resolve_model(session, model), names)
    if not chosen:
        raise CircuitsError(f"model {model} has no circuits yet: ingest some with `circuits ingest {model} …`")
    notes: list[str] = []
    if names is None and top is not None and len(chosen) > top:
        newest = sorted(chosen, key=lambda c: c.circuit_id, reverse=True)[:top]
        notes.append(
            f"the {top} concepts with the newest circuits of {len(chosen):,} on {model}: "
            "`concepts=` names others, `top=` N shows more"
        )
        chosen = sorted(newest, key=lambda c: c.concept)
    if len(chosen) > MAX_OVERLAP_CIRCUITS and not force:
        raise CircuitsError(
            f"an overlap matrix of {len(chosen):,} concepts ({len(chosen) ** 2:,} cells) is above the "
            f"{MAX_OVERLAP_CIRCUITS:,} computed without `force=`: name fewer `concepts=`, lower `top=`, or pass `force=`"
        )
    if progress is not None and len(chosen) >= PROGRESS_FROM:
        progress(f"computing the {metric} overlap of {len(chosen):,} concepts' circuits ({len(chosen) ** 2:,} cells)…")
    values = overlap_of_circuits(session, [c.circuit_id for c in chosen], metric)
    return OverlapMatrix(
        metric,
        model,
        tuple(c.concept for c in chosen),
        tuple(c.circuit_id for c in chosen),
        values,
        (*notes, *choice_notes(chosen)),
    )


@dataclass(frozen=True)
class SharedNeuron:
    """A neuron in every one of several circuits.

    Attributes:
        layer, position, channel, neuron_id: the neuron.
        scores: per circuit (in `SharedNeurons.concepts` order), the neuron's total
            within-circuit attribution: the sum of its internal edges' scores in that circuit's
            run, incoming plus outgoing (its term in the circuit-search objective).
    """

    layer: str
    position: int
    channel: int
    neuron_id: int
    scores: tuple[float, ...]


@dataclass(frozen=True)
class SharedNeurons:
    """The answer of `shared_neurons`."""

    model: str
    concepts: tuple[str, ...]
    circuit_ids: tuple[int, ...]
    sizes: tuple[int, ...]  # neurons per circuit
    neurons: tuple[SharedNeuron, ...]
    notes: tuple[str, ...] = ()

    def rows(self) -> list[dict[str, object]]:
        """One dict per shared neuron: layer, channel, then one score column per concept."""
        return [
            {"layer": n.layer, "channel": n.channel, **{c: round(s, 6) for c, s in zip(self.concepts, n.scores)}}
            for n in self.neurons
        ]


def shared_neurons(session: Session, model: str, concepts: Sequence[str]) -> SharedNeurons:
    """The neurons in all of the given concepts' circuits, with their score in each.

    Args:
        session: the caller's session.
        model: model name (``NAME@SHA256PREFIX`` when several weights share it).
        concepts: two or more concept names (each represented as in `overlap_matrix`).

    Returns:
        The shared neurons in forward layer order, then channel.

    Raises:
        NotFound: unknown model or a concept without a circuit on it.
        CircuitsError: fewer than two concepts.
    """
    if len(concepts) < 2 or len(set(concepts)) != len(concepts):
        raise CircuitsError("give two or more different concepts, e.g. `concepts=` star,wave")
    chosen: list[CircuitChoice] = concept_circuits(session, resolve_model(session, model), concepts)
    ids = [c.circuit_id for c in chosen]
    members = circuit_members(session, ids)
    cid = column(members, "circuit_id", np.int64)
    nid = column(members, "neuron_id", np.int64)
    common = nid[cid == ids[0]]
    for c in ids[1:]:
        common = np.intersect1d(common, nid[cid == c])
    sizes = tuple(int((cid == c).sum()) for c in ids)
    scores = np.zeros((len(ids), len(common)), dtype=np.float64)  # (circuits, shared neurons)
    if len(common):
        edges = internal_edges(session, ids)
        e_c = column(edges, "circuit_id", np.int64)
        row = {c: i for i, c in enumerate(ids)}
        e_row = np.array([row[c] for c in e_c.tolist()], dtype=np.int64)
        score = column(edges, "score", np.float64)
        for end in ("src_neuron_id", "dst_neuron_id"):
            neuron = column(edges, end, np.int64)
            at = np.searchsorted(common, neuron)
            hit = (at < len(common)) & (common[np.minimum(at, len(common) - 1)] == neuron)
            np.add.at(scores, (e_row[hit], at[hit]), score[hit])
    first = np.nonzero(cid == ids[0])[0]
    layers = members.column("layer").to_pylist()
    positions = column(members, "position", np.int64)
    channels = column(members, "channel", np.int64)
    info = {int(nid[r]): (layers[r], int(positions[r]), int(channels[r])) for r in first.tolist()}
    neurons = [
        SharedNeuron(info[n][0], info[n][1], info[n][2], n, tuple(float(x) for x in scores[:, j]))
        for j, n in enumerate(common.tolist())
    ]
    neurons.sort(key=lambda x: (x.position, x.channel))
    return SharedNeurons(
        model,
        tuple(c.concept for c in chosen),
        tuple(ids),
        sizes,
        tuple(neurons),
        choice_notes(chosen),
    )
