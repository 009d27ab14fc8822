"""Circuits and a run's strongest edges as NetworkX graphs, loaded from the catalog in bulk.

Nodes are neurons keyed ``"layer:channel"`` (e.g. ``"inception3a:17"``) with attributes
``model``, ``layer``, ``position`` (index in the model's layer order), ``channel``, ``label`` and
``neuron_id``; edges point downstream (layer i → layer i+1) and carry the CLA ``score``.

Every load is one SQL query whose result comes back as an Arrow table (DuckDB's native export;
PostgreSQL through Core; see `catalog.sql.query_arrow`), then NumPy, then one ``add_edges_from``:
rows never go through the ORM. A circuit's edges come from `circuit_edge` (stored with it); a
run's strongest edges are chosen exactly, in NumPy, from its full score matrices (`run_matrix`),
so any selection works, not only the top edges the `edge` table keeps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import networkx as nx
import numpy as np
import pyarrow as pa
from sqlalchemy.orm import Session

from catalog.errors import CircuitsError, NotFound
from catalog.sql import decode_json, query_arrow
from catalog.store_runs import complete_run_neurons, read_run_matrices
from catalog.vocab import RunStatus

__all__ = [
    "EdgeSelection",
    "circuit_graph",
    "column",
    "node_key",
    "run_top_edges",
    "top_edge_graph",
]


def column(table: pa.Table, name: str, dtype: Any) -> np.ndarray:
    """One column of an Arrow table as a NumPy array of `dtype` (an empty column included)."""
    values = table.column(name).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=dtype) if len(values) else np.zeros(0, dtype=dtype)


def node_key(layer: str, channel: int) -> str:
    """The graph key of a neuron: ``"layer:channel"``."""
    return f"{layer}:{int(channel)}"


@dataclass(frozen=True)
class EdgeSelection:
    """Which of a run's edges to load; exactly one of the three criteria is set.

    Attributes:
        per_neuron: keep each neuron's `per_neuron` strongest edges in `direction`.
        direction: "out" (a source neuron's strongest downstream edges) or "in" (a destination
            neuron's strongest upstream edges); used with `per_neuron` only.
        top_fraction: keep this fraction (0 < f ≤ 1) of the run's edges, strongest first.
        threshold: keep edges whose score is at least this.
    """

    per_neuron: int | None = None
    direction: Literal["out", "in"] = "out"
    top_fraction: float | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.per_neuron, self.top_fraction, self.threshold)]
        if sum(given) != 1:
            raise CircuitsError("choose the edges with exactly one of per-neuron k, top fraction or threshold")
        if self.per_neuron is not None and self.per_neuron < 1:
            raise CircuitsError(f"per-neuron k must be at least 1, got {self.per_neuron}")
        if self.top_fraction is not None and not 0.0 < self.top_fraction <= 1.0:
            raise CircuitsError(f"top fraction must be in (0, 1], got {self.top_fraction}")
        if self.direction not in ("out", "in"):
            raise CircuitsError(f"direction must be 'out' or 'in', got {self.direction!r}")


@dataclass(frozen=True)
class _RunInfo:
    run_id: int
    model_id: int
    model: str
    concept: str
    layer_names: tuple[str, ...]


def _run_info(session: Session, run_id: int) -> _RunInfo:
    table = query_arrow(
        session,
        "SELECT r.id AS run_id, r.model_id AS model_id, m.name AS model, co.name AS concept, "
        "r.layer_names AS layer_names, r.status AS status "
        "FROM run r JOIN model m ON m.id = r.model_id JOIN concept co ON co.id = r.concept_id "
        "WHERE r.id = :run_id",
        {"run_id": int(run_id)},
    )
    if table.num_rows == 0:
        raise NotFound(f"no run {run_id} in the catalog: see `circuits list runs`")
    row = table.to_pylist()[0]
    if row["status"] != RunStatus.complete:
        raise NotFound(f"run {run_id} is {row['status']}, not complete: its edges are not readable")
    names = decode_json(row["layer_names"])
    return _RunInfo(row["run_id"], row["model_id"], row["model"], row["concept"], tuple(names))


class _NeuronTable:
    """id → (layer name, position, channel, label) for a set of neurons, as dense NumPy lookups."""

    def __init__(self, table: pa.Table, model: str):
        self.model = model
        self.ids = column(table, "neuron_id", np.int64)
        self.base = int(self.ids.min()) if len(self.ids) else 0
        span = int(self.ids.max()) - self.base + 1 if len(self.ids) else 0
        self.row = np.full(span, -1, dtype=np.int64)
        self.row[self.ids - self.base] = np.arange(len(self.ids))
        self.layer = table.column("layer").to_pylist()
        self.position = column(table, "position", np.int64)
        self.channel = column(table, "channel", np.int64)
        self.label = table.column("label").to_pylist()
        self.keys = [node_key(layer, ch) for layer, ch in zip(self.layer, self.channel.tolist())]

    def rows(self, neuron_ids: np.ndarray) -> np.ndarray:
        """Row of each neuron id in this table."""
        index = np.asarray(neuron_ids, dtype=np.int64) - self.base
        if len(index) and (index.min() < 0 or index.max() >= len(self.row) or (self.row[index] < 0).any()):
            raise CircuitsError("the catalog has edges or circuit neurons outside their run's layers")
        return self.row[index]

    def add_nodes(self, graph: nx.DiGraph, rows: np.ndarray) -> None:
        """Add the neurons at `rows` as nodes with their attributes."""
        graph.add_nodes_from(
            (
                self.keys[r],
                {
                    "model": self.model,
                    "layer": self.layer[r],
                    "position": int(self.position[r]),
                    "channel": int(self.channel[r]),
                    "label": self.label[r],
                    "neuron_id": int(self.ids[r]),
                },
            )
            for r in rows.tolist()
        )


def _neurons_of_layers(session: Session, model_id: int, layer_names: Sequence[str], model: str) -> _NeuronTable:
    table = query_arrow(
        session,
        "SELECT n.id AS neuron_id, l.name AS layer, l.position AS position, n.channel AS channel, "
        "n.label AS label FROM neuron n JOIN layer l ON l.id = n.layer_id "
        "WHERE l.model_id = :model_id AND l.name = ANY(:layers) ORDER BY n.id",
        {"model_id": int(model_id), "layers": list(layer_names)},
    )
    return _NeuronTable(table, model)


def _build(
    info: _RunInfo, neurons: _NeuronTable, node_rows: np.ndarray, src: np.ndarray, dst: np.ndarray, score: np.ndarray
) -> nx.DiGraph:
    graph = nx.DiGraph(model=info.model, run_id=info.run_id, concept=info.concept, layers=list(info.layer_names))
    src_rows, dst_rows = neurons.rows(src), neurons.rows(dst)
    neurons.add_nodes(graph, np.unique(np.concatenate([node_rows, src_rows, dst_rows])))
    keys = neurons.keys
    graph.add_edges_from(
        (keys[a], keys[b], {"score": s})
        for a, b, s in zip(src_rows.tolist(), dst_rows.tolist(), score.astype(float).tolist())
    )
    return graph


def circuit_graph(session: Session, circuit_id: int) -> nx.DiGraph:
    """A circuit as a DiGraph: its neurons, and the CLA edges between them from its run.

    Args:
        session: the caller's session.
        circuit_id: the circuit.

    Returns:
        Every circuit neuron as a node (isolated ones too), every stored edge of the circuit's
        run between two circuit neurons as an edge with its ``score``. Graph attributes:
        ``model``, ``run_id``, ``concept``, ``layers``, ``circuit_id``.

    Raises:
        NotFound: no such circuit, or its run is not complete.
    """
    table = query_arrow(session, "SELECT run_id FROM circuit WHERE id = :c", {"c": int(circuit_id)})
    if table.num_rows == 0:
        raise NotFound(f"no circuit {circuit_id} in the catalog: see `circuits list circuits`")
    info = _run_info(session, int(table.column("run_id")[0].as_py()))
    neurons = _neurons_of_layers(session, info.model_id, info.layer_names, info.model)
    members = column(
        query_arrow(session, "SELECT neuron_id FROM circuit_neuron WHERE circuit_id = :c", {"c": int(circuit_id)}),
        "neuron_id",
        np.int64,
    )
    edges = query_arrow(
        session,
        "SELECT src_neuron_id AS src, dst_neuron_id AS dst, score FROM circuit_edge WHERE circuit_id = :c",
        {"c": int(circuit_id)},
    )
    graph = _build(
        info,
        neurons,
        neurons.rows(members),
        column(edges, "src", np.int64),
        column(edges, "dst", np.int64),
        column(edges, "score", np.float32),
    )
    graph.graph["circuit_id"] = int(circuit_id)
    return graph


def run_top_edges(session: Session, run_id: int, selection: EdgeSelection) -> pa.Table:
    """The selected strongest edges of a run, as one Arrow table.

    Args:
        session: the caller's session.
        run_id: a complete run.
        selection: which edges (see `EdgeSelection`). Ties are broken by lower neuron ids.

    Returns:
        Columns ``src_neuron_id``, ``dst_neuron_id`` (int32) and ``score`` (float32), strongest
        first.

    Raises:
        NotFound: no such run, or it is not complete.
    """
    _run_info(session, run_id)  # existence and status
    _, neuron_ids = complete_run_neurons(session, run_id)
    matrices = read_run_matrices(session, run_id)
    src, dst, score = _candidates(neuron_ids, matrices, selection)
    if selection.per_neuron is not None:  # exact rank within each neuron, among the candidates
        group, other = (src, dst) if selection.direction == "out" else (dst, src)
        ranked = np.lexsort((other, -score, group))  # by neuron, then score desc, then the other end
        g = group[ranked]
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
        kept = ranked[rank < selection.per_neuron]
        src, dst, score = src[kept], dst[kept], score[kept]
    order = np.lexsort((dst, src, -score))  # strongest first, ties by lower neuron ids
    if selection.top_fraction is not None:
        order = order[: math.ceil(selection.top_fraction * sum(m.size for m in matrices))]
    return pa.table(
        {
            "src_neuron_id": src[order].astype(np.int32),
            "dst_neuron_id": dst[order].astype(np.int32),
            "score": score[order].astype(np.float32),
        }
    )


def _candidates(
    neuron_ids: Sequence[np.ndarray], matrices: Sequence[np.ndarray], selection: EdgeSelection
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A superset of the selected edges, found without sorting the whole run.

    Everything at or above the cut-off value (the threshold, the run's n-th highest score for a
    fraction, each neuron's k-th highest for per-neuron k) is a candidate; ties at the cut-off are
    settled exactly by the caller. Returns (src ids, dst ids, scores as float64).
    """
    cut: float | None = None
    if selection.threshold is not None:
        cut = float(selection.threshold)
    elif selection.top_fraction is not None:
        flat = np.concatenate([m.reshape(-1) for m in matrices])
        n = math.ceil(selection.top_fraction * len(flat))
        cut = float(np.partition(flat, len(flat) - n)[len(flat) - n])
    parts = []
    for i, m in enumerate(matrices):
        if cut is not None:
            keep = m >= np.float64(cut)  # compared as doubles, as SQL compared REAL with a parameter
        else:
            k = int(selection.per_neuron)  # type: ignore[arg-type]
            lines = m if selection.direction == "out" else m.T  # one line per grouping neuron
            if k >= lines.shape[1]:
                keep = np.ones(m.shape, dtype=bool)
            else:
                kth = np.partition(lines, lines.shape[1] - k, axis=1)[:, lines.shape[1] - k]
                keep = lines >= kth[:, None]
                keep = keep if selection.direction == "out" else keep.T
        rows, cols = np.nonzero(keep)
        parts.append(
            (np.asarray(neuron_ids[i], np.int64)[rows], np.asarray(neuron_ids[i + 1], np.int64)[cols], m[rows, cols])
        )
    src, dst, score = (np.concatenate([p[j] for p in parts]) for j in range(3))
    return src, dst, score.astype(np.float64)


def top_edge_graph(session: Session, run_id: int, selection: EdgeSelection) -> nx.DiGraph:
    """A run's strongest edges as a DiGraph (only neurons on a selected edge become nodes).

    Args:
        session: the caller's session.
        run_id: a complete run.
        selection: which edges (see `EdgeSelection`).

    Returns:
        The graph; graph attributes ``model``, ``run_id``, ``concept``, ``layers``.

    Raises:
        NotFound: no such run, or it is not complete.
    """
    info = _run_info(session, run_id)
    edges = run_top_edges(session, run_id, selection)
    neurons = _neurons_of_layers(session, info.model_id, info.layer_names, info.model)
    return _build(
        info,
        neurons,
        np.zeros(0, dtype=np.int64),
        column(edges, "src_neuron_id", np.int64),
        column(edges, "dst_neuron_id", np.int64),
        column(edges, "score", np.float32),
    )
