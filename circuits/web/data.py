"""What each page of the catalog browser shows, read from the catalog as plain objects.

Every function takes the caller's Session and returns dataclasses (no ORM rows), built on the
public read functions of `queries` and `catalog.store`/`catalog.media`. The few aggregate SQL
statements here (neuron totals, a neuron's strongest edges, image sets) only read.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.orm import Session

from catalog import media, media_featurevis, store
from catalog.errors import NotFound
from circuits.web.home_data import (  # noqa: F401 (re-exported: one module for the pages' data)
    SchemaTable,
    image_set_view,
    run_of,
    schema_view,
)
from queries import listing
from queries.graphs import circuit_graph, query_arrow

__all__ = [
    "CircuitView",
    "Node",
    "SchemaTable",
    "circuit_view",
    "compare_view",
    "image_set_view",
    "neuron_href",
    "neuron_id_text",
    "neuron_view",
    "schema_view",
]

FADED_PER_LAYER = 4
"""How many of the strongest non-circuit neurons of each layer are drawn faded behind the circuit."""


def neuron_id_text(model: str, layer: str, channel: int) -> str:
    """The stable id of a neuron: ``model/layer:channel`` (like Microscope's ``4c:447``)."""
    return f"{model}/{layer}:{channel}"


def neuron_href(model: str, layer: str, channel: int) -> str:
    """The browser path of a neuron's page (model and layer quoted, so '/' and ':' survive)."""
    return f"/neuron/{urllib.parse.quote(model, safe='')}/{urllib.parse.quote(layer, safe='')}:{int(channel)}"


@dataclass(frozen=True)
class Node:
    """A neuron drawn in a circuit graph."""

    layer: str
    layer_index: int
    channel: int
    neuron_id: int
    total: float  # total CLA attribution in the run (in + out edge scores)
    in_circuit: bool
    label: str | None = None  # the neuron's catalog label (a logit's class name: ingest.writer.class_labels)


@dataclass(frozen=True)
class CircuitView:
    """A circuit with what its page shows."""

    details: listing.CircuitDetails
    nodes: tuple[Node, ...]
    edges: tuple[tuple[int, int, float], ...]  # (src neuron id, dst neuron id, score) inside the circuit
    patches: dict[int, list[media.PatchRow]]  # neuron id → patches, strongest first
    export_command: str
    ablate_command: str = ""  # complete: the run's own images, --model/--weights/--db as needed
    weights_warning: str | None = None  # set when the run's weights were random-init
    thumbnails_command: str = ""  # complete, for neurons without stored patches
    description: str | None = None  # the concept's description (`circuits concept describe`)
    featurevis: dict[int, media_featurevis.FeatureVisRow] = field(default_factory=dict)  # neuron id → picture
    reference: dict[int, list[media.PatchRow]] = field(default_factory=dict)  # neuron id → reference-set patches

    @property
    def model(self) -> str:
        return self.details.run.model

    @property
    def sizes(self) -> dict[str, int]:
        """Circuit neurons per layer."""
        return {name: len(ch) for name, ch in zip(self.details.circuit.layer_names, self.details.circuit.channels)}


def _totals(session: Session, run_id: int) -> dict[int, float]:
    """Total attribution of every neuron of a run: the sum of its in and out edge scores.

    From the run's full score matrices (the `edge` table holds only the top edges).
    """
    from catalog.store_runs import complete_run_neurons

    _, neuron_ids = complete_run_neurons(session, run_id)
    totals = [np.zeros(len(ids)) for ids in neuron_ids]
    for i, m in enumerate(store.read_run_matrices(session, run_id)):
        totals[i] += m.sum(axis=1, dtype=np.float64)  # out of layer i
        totals[i + 1] += m.sum(axis=0, dtype=np.float64)  # into layer i + 1
    return {int(n): float(t) for ids, tot in zip(neuron_ids, totals) for n, t in zip(ids.tolist(), tot.tolist())}


def circuit_view(
    session: Session,
    circuit_id: int,
    *,
    faded_per_layer: int = FADED_PER_LAYER,
    with_png: bool = False,
    db: str | None = None,
) -> CircuitView:
    """Everything the circuit page draws.

    Args:
        session: the caller's session.
        circuit_id: the circuit.
        faded_per_layer: strongest non-circuit neurons per layer drawn faded.
        with_png: load the patch PNG bytes too (for a self-contained report).
        db: the catalog as the suggested commands should name it (`--db`); None: the default one.

    Raises:
        NotFound: no such circuit, or its run is not complete.
    """
    choice = listing.resolve_circuit(session, int(circuit_id))
    details = listing.circuit_details(session, choice.circuit_id)
    run, circuit = details.run, details.circuit
    graph = circuit_graph(session, circuit.id)
    ids = media.neuron_id_map(session, run.model_id, list(run.layer_names))
    totals = _totals(session, run.id)
    nodes: list[Node] = []
    members: list[int] = []
    for i, (layer, chans) in enumerate(zip(circuit.layer_names, circuit.channels)):
        stored = details.labels.get(layer, {})  # the catalog's labels: class names of a logit layer
        chosen = set(int(c) for c in chans)
        for c in sorted(chosen):
            nid = ids[(layer, c)]
            members.append(nid)
            nodes.append(Node(layer, i, c, nid, totals.get(nid, 0.0), True, stored.get(c)))
        others = sorted(
            ((totals.get(nid, 0.0), ch, nid) for (lay, ch), nid in ids.items() if lay == layer and ch not in chosen),
            key=lambda t: (-t[0], t[1]),
        )[:faded_per_layer]
        nodes.extend(Node(layer, i, ch, nid, t, False, stored.get(ch)) for t, ch, nid in others)
    edges = tuple(
        (int(graph.nodes[a]["neuron_id"]), int(graph.nodes[b]["neuron_id"]), float(d["score"]))
        for a, b, d in graph.edges(data=True)
    )
    patches = {nid: rows for (_, nid), rows in media.read_patches(session, run.id, members, with_png=with_png).items()}
    from queries.suggest import ablate_next_step, db_flag, thumbnails_command, weights_warning

    command = f"circuits export {circuit.id} -o circuit-{circuit.id}.json{db_flag(db)}"
    ablate = ablate_next_step(session, circuit.id, run.id, db)
    warning = weights_warning(run.library_versions)
    thumbs = thumbnails_command(session, run.id, db)
    description = next((c.description for c in listing.list_concepts(session) if c.id == run.concept_id), None)
    pictures = {
        nid: row
        for (_, nid), row in media_featurevis.read_featurevis(session, run.id, members, with_png=with_png).items()
    }
    reference = {
        nid: rows
        for (_, nid), rows in media.read_patches(session, run.id, members, with_png=with_png, reference=True).items()
    }
    return CircuitView(
        details, tuple(nodes), edges, patches, command, ablate, warning, thumbs, description, pictures, reference
    )


@dataclass(frozen=True)
class Membership:
    """One circuit a neuron belongs to."""

    circuit_id: int
    run_id: int
    concept: str
    size: int


@dataclass(frozen=True)
class EdgeRow:
    """One of a neuron's strongest edges: the other end and the score, within a run."""

    run_id: int
    concept: str
    layer: str
    channel: int
    score: float


@dataclass(frozen=True)
class NeuronView:
    """A neuron's page."""

    model: str
    layer: str
    channel: int
    neuron_id: int
    circuits: tuple[Membership, ...]
    patches: dict[str, list[media.PatchRow]]  # concept → patches (newest run first)
    incoming: tuple[EdgeRow, ...]
    outgoing: tuple[EdgeRow, ...]
    featurevis: dict[str, media_featurevis.FeatureVisRow] = field(default_factory=dict)  # concept → picture
    label: str | None = None  # the neuron's catalog label, e.g. a logit's class name
    reference: list[media.PatchRow] = field(default_factory=list)  # top reference-set patches (newest run)


def neuron_view(session: Session, model: str, layer: str, channel: int, *, top_edges: int = 10) -> NeuronView:
    """Every circuit a neuron belongs to, its patches per concept, its strongest in/out edges.

    Raises:
        NotFound: no such model, layer or channel.
        CircuitsError: a model name with several weights (name it ``name@sha``).
    """
    m = listing.resolve_model(session, model)
    ids = media.neuron_id_map(session, m.id, [layer])
    nid = ids.get((layer, int(channel)))
    if nid is None:
        raise NotFound(f"model {m.name} has no neuron {layer}:{channel} in the catalog")
    rows = query_arrow(
        session,
        "SELECT v.circuit_id AS circuit_id, v.run_id AS run_id, v.concept AS concept, "
        "(SELECT count(*) FROM circuit_neuron x WHERE x.circuit_id = v.circuit_id) AS size "
        "FROM circuit_neurons_v v WHERE v.neuron_id = :n ORDER BY v.concept, v.circuit_id",
        {"n": nid},
    ).to_pylist()
    circuits = tuple(Membership(int(r["circuit_id"]), int(r["run_id"]), r["concept"], int(r["size"])) for r in rows)
    concept_of_run = {
        int(r["id"]): r["concept"]
        for r in query_arrow(
            session,
            "SELECT r.id AS id, c.name AS concept FROM run r JOIN concept c ON c.id = r.concept_id "
            "WHERE r.model_id = :m AND r.status = 'complete'",
            {"m": m.id},
        ).to_pylist()
    }
    patches: dict[str, list[media.PatchRow]] = {}
    for (run_id, _), found in sorted(media.read_patches(session, None, [nid]).items(), reverse=True):
        patches.setdefault(concept_of_run.get(run_id, f"run {run_id}"), found)  # newest run per concept

    def edges(direction: str) -> tuple[EdgeRow, ...]:
        mine, other = ("dst_neuron_id", "src_neuron_id") if direction == "in" else ("src_neuron_id", "dst_neuron_id")
        table = query_arrow(
            session,
            f"SELECT e.run_id AS run_id, co.name AS concept, l.name AS layer, n.channel AS channel, e.score AS score "
            f"FROM edge e JOIN run r ON r.id = e.run_id AND r.status = 'complete' "
            f"JOIN concept co ON co.id = r.concept_id JOIN neuron n ON n.id = e.{other} "
            f"JOIN layer l ON l.id = n.layer_id WHERE e.{mine} = :n ORDER BY e.score DESC LIMIT {int(top_edges)}",
            {"n": nid},
        )
        return tuple(
            EdgeRow(int(r["run_id"]), r["concept"], r["layer"], int(r["channel"]), float(r["score"]))
            for r in table.to_pylist()
        )

    pictures: dict[str, media_featurevis.FeatureVisRow] = {}
    for (run_id, _), row in sorted(media_featurevis.read_featurevis(session, None, [nid]).items(), reverse=True):
        pictures.setdefault(concept_of_run.get(run_id, f"run {run_id}"), row)  # newest run per concept
    label = store.neuron_labels(session, m.id, layer).get(int(channel))  # e.g. a logit's class name
    refs = sorted(media.read_patches(session, None, [nid], reference=True).items(), reverse=True)
    return NeuronView(
        m.name,
        layer,
        int(channel),
        nid,
        circuits,
        patches,
        edges("in"),
        edges("out"),
        pictures,
        label,
        refs[0][1] if refs else [],
    )


@dataclass(frozen=True)
class CompareView:
    """Several circuits side by side."""

    circuits: tuple[CircuitView, ...]
    shared: frozenset[int]  # neuron ids in two or more of the circuits
    labels: tuple[str, ...]
    jaccard: np.ndarray  # (N, N)
    shared_counts: np.ndarray  # (N, N)


def compare_view(session: Session, circuit_ids: Sequence[int]) -> CompareView:
    """Circuits side by side with their shared neurons and overlap matrices.

    Raises:
        NotFound: a circuit does not exist. CircuitsError: fewer than two, or one given twice.
    """
    from catalog.errors import CircuitsError
    from queries.overlap import overlap_of_circuits

    ids = [int(c) for c in circuit_ids]
    if len(ids) < 2:
        raise CircuitsError("compare needs two or more circuits: tick them on the home page")
    views = tuple(circuit_view(session, c, faded_per_layer=0) for c in ids)
    count: dict[int, int] = {}
    for v in views:
        for n in v.nodes:
            if n.in_circuit:
                count[n.neuron_id] = count.get(n.neuron_id, 0) + 1
    labels = tuple(f"#{v.details.circuit.id} {v.details.run.concept}" for v in views)
    return CompareView(
        views,
        frozenset(n for n, k in count.items() if k > 1),
        labels,
        overlap_of_circuits(session, ids, "jaccard"),
        overlap_of_circuits(session, ids, "shared"),
    )
