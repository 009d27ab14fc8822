"""Query library on a catalog built in the test (real migrated DuckDB file) with known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_queries_toy import LAYERS, build_toy, channels_of, internal_weights, neuron_set

from catalog.engine import open_catalog
from catalog.errors import CircuitsError, NotFound
from circuits.cli.render import details_dict, details_text
from queries.compose import compose_circuit
from queries.graphs import EdgeSelection, circuit_graph, run_top_edges, top_edge_graph
from queries.listing import (
    circuit_details,
    concept_circuits,
    list_circuits,
    list_concepts,
    list_models,
    list_runs,
    resolve_circuit,
    resolve_model,
)
from queries.overlap import jaccard_matrix, overlap_matrix, shared_neurons, weighted_jaccard_matrix
from queries.prune_plan import image_set_concept, plan_pruning
from queries.resolve import _first_few

NAMES = ["cat", "fish", "star", "text", "wave"]


@pytest.fixture(scope="module")
def toy(module_db_url):
    """The toy catalog, once on DuckDB and once on PostgreSQL (`module_db_url`)."""
    return build_toy(module_db_url)


@pytest.fixture()
def s(toy):
    with open_catalog(toy.path, read_only=True).session() as session:
        yield session


# ---------------------------------------------------------------- overlap


def test_overlap_jaccard_known_values_and_newest_circuit(toy, s):
    m = overlap_matrix(s, "toy")
    assert m.labels == tuple(NAMES)
    assert m.circuit_ids == tuple(toy.circuit[n] for n in NAMES)  # newest circuit of newest run
    at = {n: i for i, n in enumerate(NAMES)}
    hand = {
        ("star", "wave"): 1 / 9,
        ("star", "cat"): 2 / 8,
        ("wave", "fish"): 3 / 7,
        ("star", "fish"): 0.0,
        ("cat", "fish"): 1 / 9,
        ("wave", "cat"): 1 / 9,
    }
    for (a, b), want in hand.items():
        assert m.values[at[a], at[b]] == pytest.approx(want)
        assert m.values[at[b], at[a]] == pytest.approx(want)
    assert np.allclose(np.diag(m.values), 1.0)
    # Every cell agrees with plain Python sets.
    for a, b in itertools.product(NAMES, NAMES):
        sa, sb = neuron_set(a), neuron_set(b)
        assert m.values[at[a], at[b]] == pytest.approx(len(sa & sb) / len(sa | sb))
    assert any("star has 3 circuits" in note and f"circuit {toy.circuit['star']}" in note for note in m.notes)


def test_overlap_shared_metric_and_concept_subset(toy, s):
    m = overlap_matrix(s, "toy", ["star", "cat", "text"], metric="shared")
    assert m.labels == ("star", "cat", "text")
    assert m.values.tolist() == [[5, 2, 0], [2, 5, 2], [0, 2, 3]]
    with pytest.raises(CircuitsError, match="metric"):
        overlap_matrix(s, "toy", metric="cosine")
    with pytest.raises(NotFound, match="nope"):
        overlap_matrix(s, "toy", ["star", "nope"])


def test_overlap_weighted_matches_plain_reference(toy, s):
    m = overlap_matrix(s, "toy", metric="weighted")

    def normalised(name):
        w = internal_weights(toy, name)
        total = sum(w.values())
        return {k: v / total for k, v in w.items()}

    for i, a in enumerate(NAMES):
        for j, b in enumerate(NAMES):
            wa, wb = normalised(a), normalised(b)
            keys = set(wa) | set(wb)
            num = sum(min(wa.get(k, 0), wb.get(k, 0)) for k in keys)
            den = sum(max(wa.get(k, 0), wb.get(k, 0)) for k in keys)
            assert m.values[i, j] == pytest.approx(num / den, rel=1e-5), (a, b)
    assert 0 < m.values[NAMES.index("cat"), NAMES.index("star")] < 1  # they share edge a:0 → b:1


def test_matrix_kernels_match_plain_python_on_random_sets():
    rng = np.random.default_rng(0)
    n = 7
    sets = [set(rng.choice(40, size=rng.integers(0, 12), replace=False).tolist()) for _ in range(n)]
    index = np.array([i for i, st in enumerate(sets) for _ in st], dtype=np.int64)
    items = np.array([x for st in sets for x in st], dtype=np.int64)
    shared, jac = jaccard_matrix(index, items, n)
    weights = [{x: float(rng.uniform(0.1, 3)) for x in st} for st in sets]
    wjac = weighted_jaccard_matrix(index, items, np.array([weights[i][x] for i, x in zip(index, items)]), n)
    for a, b in itertools.product(range(n), range(n)):
        assert shared[a, b] == len(sets[a] & sets[b])
        union = len(sets[a] | sets[b])
        assert (np.isnan(jac[a, b]) and union == 0) or jac[a, b] == pytest.approx(len(sets[a] & sets[b]) / union)
        if a == b:
            assert wjac[a, b] == 1.0
            continue
        if not sets[a] or not sets[b]:
            assert np.isnan(wjac[a, b])
            continue
        na = {k: v / sum(weights[a].values()) for k, v in weights[a].items()}
        nb = {k: v / sum(weights[b].values()) for k, v in weights[b].items()}
        keys = set(na) | set(nb)
        want = sum(min(na.get(k, 0), nb.get(k, 0)) for k in keys) / sum(max(na.get(k, 0), nb.get(k, 0)) for k in keys)
        assert wjac[a, b] == pytest.approx(want)


# ---------------------------------------------------------------- shared and compose


def test_shared_neurons_known_with_scores_from_the_matrices(toy, s):
    result = shared_neurons(s, "toy", ["star", "cat"])
    assert [(n.layer, n.channel) for n in result.neurons] == [("a", 0), ("b", 1)]
    assert result.sizes == (5, 5)
    for col, name in enumerate(["star", "cat"]):
        w = internal_weights(toy, name)
        for n in result.neurons:
            want = sum(v for (src, dst), v in w.items() if (n.layer, n.channel) in (src, dst))
            assert n.scores[col] == pytest.approx(want, rel=1e-6)
    assert shared_neurons(s, "toy", ["star", "wave", "cat"]).neurons == ()
    with pytest.raises(CircuitsError, match="two or more"):
        shared_neurons(s, "toy", ["star"])


def test_compose_known_coverage(toy, s):
    result = compose_circuit(s, toy.circuit["cat"], ["star", "wave"])
    got = [(c.layer, c.neurons, c.covered, c.by_concept) for c in result.layers]
    assert got == [("a", 2, 1, (1, 0)), ("b", 2, 2, (1, 1)), ("c", 1, 0, (0, 0))]
    assert (result.total.neurons, result.total.covered, result.total.fraction) == (5, 3, pytest.approx(0.6))
    assert result.concept_circuit_ids == (toy.circuit["star"], toy.circuit["wave"])
    # Reference with sets: the union of the concept circuits' neurons.
    union = neuron_set("star") | neuron_set("wave")
    assert result.total.covered == len(neuron_set("cat") & union)
    full = compose_circuit(s, toy.circuit["cat"], ["star", "wave", "fish", "text"])
    assert full.total.covered == len(neuron_set("cat") & (union | neuron_set("fish") | neuron_set("text")))


# ---------------------------------------------------------------- graphs


def test_circuit_graph_has_the_circuit_and_its_internal_edges(toy, s):
    g = circuit_graph(s, toy.circuit["cat"])
    assert set(g.nodes) == {f"{layer}:{ch}" for layer, ch in neuron_set("cat")}
    assert g.nodes["b:2"] == {
        "model": "toy",
        "layer": "b",
        "position": 1,
        "channel": 2,
        "label": None,
        "neuron_id": g.nodes["b:2"]["neuron_id"],
    }
    want = {(f"{a[0]}:{a[1]}", f"{b[0]}:{b[1]}"): v for (a, b), v in internal_weights(toy, "cat").items()}
    assert {(u, v): d["score"] for u, v, d in g.edges(data=True)} == pytest.approx(want)
    assert g.graph["circuit_id"] == toy.circuit["cat"] and g.graph["concept"] == "cat"


def _all_edges(toy, name):
    """Reference: every edge of a run as (src key, dst key, score) from the matrices."""
    out = []
    for i, mat in enumerate(toy.matrices[name]):
        for m, n in itertools.product(range(mat.shape[0]), range(mat.shape[1])):
            out.append((f"{LAYERS[i][0]}:{m}", f"{LAYERS[i + 1][0]}:{n}", float(mat[m, n])))
    return out


def test_top_edges_by_fraction_threshold_and_per_neuron_match_reference(toy, s):
    run = toy.run["fish"]
    edges = _all_edges(toy, "fish")  # 4·5 + 5·3 = 35 edges, distinct scores
    by_score = sorted(edges, key=lambda e: -e[2])

    g = top_edge_graph(s, run, EdgeSelection(top_fraction=0.2))
    assert set(g.edges) == {(a, b) for a, b, _ in by_score[:7]}  # ceil(0.2 · 35)
    assert g.graph["run_id"] == run and all(g.nodes[v]["model"] == "toy" for v in g.nodes)

    threshold = by_score[10][2]
    g = top_edge_graph(s, run, EdgeSelection(threshold=threshold))
    assert set(g.edges) == {(a, b) for a, b, sc in edges if sc >= threshold}

    for direction, end in (("out", 0), ("in", 1)):
        g = top_edge_graph(s, run, EdgeSelection(per_neuron=2, direction=direction))
        want = set()
        for key in {e[end] for e in edges}:
            mine = sorted((e for e in edges if e[end] == key), key=lambda e: -e[2])[:2]
            want |= {(a, b) for a, b, _ in mine}
        assert set(g.edges) == want, direction

    table = run_top_edges(s, run, EdgeSelection(top_fraction=1.0))
    scores = table.column("score").to_pylist()
    assert table.num_rows == 35 and scores == sorted(scores, reverse=True)
    with pytest.raises(CircuitsError, match="exactly one"):
        EdgeSelection(per_neuron=2, threshold=1.0)
    with pytest.raises(NotFound):
        top_edge_graph(s, 9999, EdgeSelection(threshold=0.0))


# ---------------------------------------------------------------- lookups and listings


def test_resolution_of_models_and_circuits(toy, s):
    assert resolve_model(s, "toy@aaaa").name == "toy"
    with pytest.raises(NotFound, match="toy@bbbb"):
        resolve_model(s, "toy@bbbb")
    with pytest.raises(CircuitsError, match="several models"):
        resolve_circuit(s, "star")
    assert resolve_circuit(s, "star", "toy").circuit_id == toy.circuit["star"]
    assert resolve_circuit(s, "star", "other").circuit_id == toy.other_model_circuit
    assert resolve_circuit(s, "cat").circuit_id == toy.circuit["cat"]
    assert resolve_circuit(s, str(toy.older[0])).circuit_id == toy.older[0]
    with pytest.raises(NotFound):
        resolve_circuit(s, "9999")
    chosen = {c.concept: c for c in concept_circuits(s, resolve_model(s, "toy"))}
    assert set(chosen) == set(NAMES) and chosen["star"].n_circuits == 3 and chosen["cat"].note is None


def test_listings_and_filters(toy, s):
    runs = list_runs(s, model="toy")
    assert len(runs) == 7 and [r.status for r in runs].count("failed") == 1
    assert [r.concept for r in list_runs(s, model="toy", status="failed")] == ["wave"]
    assert [r.circuits for r in list_runs(s, concept="star", model="toy")] == [1, 2]
    circuits = list_circuits(s, model="toy")
    assert len(circuits) == 7 and {c.id for c in circuits} >= set(toy.circuit.values())
    assert {c.concept for c in list_circuits(s, concept="star")} == {"star"} and len(
        list_circuits(s, concept="star")
    ) == 4
    assert next(c for c in circuits if c.id == toy.circuit["wave"]).interventions == 2
    concepts = {c.name: c for c in list_concepts(s)}
    assert concepts["star"].runs == 3 and concepts["cat"].image_sets == 1
    assert {c.name: c.runs for c in list_concepts(s, model="other")} == {"star": 1}
    assert [(m.name, m.runs, m.circuits) for m in list_models(s)] == [("other", 1, 1), ("toy", 6, 7)]
    with pytest.raises(CircuitsError, match="status"):
        list_runs(s, status="done")


def test_circuit_details(toy, s):
    d = circuit_details(s, toy.circuit["star"])
    assert d.circuit.channels == tuple(tuple(c) for c in channels_of("star"))
    assert len(d.interventions) == 2
    text = details_text(d)
    assert "concept star on toy" in text and "catfish:fish#seed=1" in text and "0.8500" in text
    assert details_dict(d)["layers"][1]["channels"] == [0, 1]
    assert "no interventions yet" in details_text(circuit_details(s, toy.circuit["fish"]))


# ---------------------------------------------------------------- prune plans


def test_prune_plan_ranks_by_evidence_then_proxy(toy, s):
    # With the default keep budget star (fish 0.85, 5 points below its random 0.9) and wave are over it.
    budgeted = plan_pruning(s, "toy", "cat", ["fish"])
    over = {c.circuit_id: c.keep_damage for c in budgeted.candidates if c.basis == "over-budget"}
    assert over == {toy.circuit["star"]: pytest.approx(0.05), toy.circuit["wave"]: pytest.approx(0.5)}
    plan = plan_pruning(s, "toy", "cat", ["fish"], keep_budget=None)
    ids = [c.circuit_id for c in plan.candidates]
    # Complete evidence first (by score), then partial evidence (text lacks fish), then proxies.
    assert ids[:3] == [toy.circuit["star"], toy.circuit["wave"], toy.circuit["text"]]
    star, wave, text = plan.candidates[:3]
    assert [c.basis for c in plan.candidates[:3]] == ["evidence", "evidence", "partial"]
    assert star.basis == "evidence" and star.score == pytest.approx((0.9 - 0.3) - (0.9 - 0.85))
    assert wave.score == pytest.approx((0.9 - 0.6) - (0.9 - 0.4))
    assert star.against.before == 0.9 and star.against.after == 0.3 and star.edge_fraction == 0.05
    # text's cat evidence is found by the image set's sha256 (a folder named otherwise).
    assert text.against.image_set == "dir:/data/kitties" and text.missing == ("fish",)
    assert text.commands == (f"circuits ablate {toy.circuit['text']} --kind circuit --dataset catfish:fish",)
    # Keep concepts' circuits are not candidates; the rest rank by the labelled proxy.
    assert toy.circuit["fish"] not in ids
    proxy = plan.candidates[3]
    assert proxy.basis == "proxy" and proxy.circuit_id == toy.circuit["cat"]
    assert proxy.score == pytest.approx(1.0 - 1 / 9)
    assert f"circuits ablate {toy.circuit['cat']} --kind circuit --dataset catfish:cat" in proxy.commands


def test_prune_plan_against_an_attack_uses_attack_success(toy, s):
    plan = plan_pruning(s, "toy", "attack", ["cat"])
    best = plan.candidates[0]
    assert best.circuit_id == toy.circuit["text"] and best.against.metric == "attack_success"
    assert best.score == pytest.approx((0.8 - 0.1) - (0.9 - 0.88))
    assert all(c.basis == "proxy" and c.score is None for c in plan.candidates[1:])
    assert any("attack has no circuit" in n for n in plan.notes)
    with pytest.raises(CircuitsError, match="both"):
        plan_pruning(s, "toy", "cat", ["cat"])
    with pytest.raises(NotFound, match="dog"):
        plan_pruning(s, "toy", "dog", ["cat"])


def test_image_set_concept_names():
    assert image_set_concept("catfish:disc_star#seed=3") == "disc_star"
    assert image_set_concept("dir:/data/cats/") == "cats"
    assert image_set_concept("cats") == "cats"


def test_queries_never_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, circuits.cli.read, queries.graphs, queries.overlap, queries.compose, queries.listing, "
        "queries.prune_plan, queries.plots, circuits.cli.render; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_concept_not_found_message_is_bounded(toy, s):
    model = resolve_model(s, "toy")
    asked = [f"absent-{i:02d}" for i in range(40)]
    with pytest.raises(NotFound) as err:
        concept_circuits(s, model, asked)
    message = str(err.value)
    assert "absent-00, absent-01, absent-02, absent-03, absent-04 … and 35 more" in message
    assert "absent-05" not in message and "\n" not in message
    with pytest.raises(NotFound, match=r"concepts with circuits: .*`circuits ingest toy --concept nope"):
        concept_circuits(s, model, ["nope"])
    names = [f"c{i}" for i in range(1000)]  # the list of concepts that have circuits is cut the same way
    assert _first_few(names, "; hint") == "c0, c1, c2, c3, c4 … and 995 more; hint"
