"""catalog.store: models, concepts, runs, circuits, interventions, views, deletion."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest
import sqlalchemy as sa

from catalog import store
from catalog.edge_select import DEFAULT_TOP_K, top_edge_mask
from catalog.errors import CatalogError, NotFound
from catalog.store import EvaluationRow

LAYERS = [("l0", 4), ("l1", 6), ("l2", 5)]
NAMES = [n for n, _ in LAYERS]


@pytest.fixture
def cat(any_cat):
    """Every test here runs on DuckDB and on PostgreSQL (see conftest `any_cat`)."""
    return any_cat


def _run_fields(**over):
    fields = dict(
        layer_names=NAMES,
        params={"method": "test"},
        image_set_sha256="1" * 64,
        n_images=3,
        provenance_key="p" * 64,
        library_versions={"torch": "x"},
        device="cpu",
        started_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        seconds=2.5,
    )
    fields.update(over)
    return fields


def _matrices(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((4, 6), dtype=np.float32), rng.random((6, 5), dtype=np.float32)]


def _model(s, sha_char, layers):
    return store.ensure_model(s, name="toy", architecture="cnn", weights_sha256=sha_char * 64, layers=layers)


def _setup(s, name="toy", sha="a" * 64, concept="star", key="p" * 64):
    model = store.ensure_model(s, name=name, architecture="cnn", weights_sha256=sha, layers=LAYERS)
    concept_id = store.ensure_concept(s, concept)
    run_id = store.write_run(
        s, model=model, concept_id=concept_id, matrices=_matrices(), **_run_fields(provenance_key=key)
    )
    return model, concept_id, run_id


def _n_top_edges():
    """Rows a run of `_matrices()` keeps in `edge` (its top edges)."""
    return sum(int(top_edge_mask(m, DEFAULT_TOP_K).sum()) for m in _matrices())


def _circuit(s, run_id, channels, k=2):
    return store.write_circuit(
        s,
        run_id=run_id,
        channels=channels,
        k=[k] * len(channels),
        fixed=None,
        sweeps=2,
        converged=True,
        objective_history=[1.0, 1.5, 1.5],
    )


def test_ensure_model_is_idempotent_and_neuron_ids_match_the_table(cat):
    with cat.session() as s, s.begin():
        first = _model(s, "a", LAYERS)
        again = _model(s, "a", LAYERS[:2])
        other = _model(s, "b", LAYERS)
    assert again == first and other.id != first.id
    assert first.layer_order == tuple(NAMES) and [la.width for la in first.layers] == [4, 6, 5]
    with cat.session() as s:
        rows = s.execute(
            sa.text(
                "SELECT l.name, n.channel, n.id FROM neuron n JOIN layer l ON l.id = n.layer_id WHERE l.model_id = :m"
            ),
            {"m": first.id},
        ).all()
        assert store.find_model(s, "toy", "a" * 64).id == first.id
        with pytest.raises(CatalogError, match="several weights"):
            store.find_model(s, "toy")
        with pytest.raises(NotFound):
            store.find_model(s, "nope")
    assert len(rows) == 15
    for layer_name, channel, neuron_id in rows:
        assert first.layer(layer_name).neuron_ids[channel] == neuron_id
    assert len({int(i) for la in first.layers for i in la.neuron_ids}) == 15


def test_ensure_model_refuses_other_widths_and_appends_new_layers(cat):
    with cat.session() as s, s.begin():
        _model(s, "a", LAYERS[:2])
        with pytest.raises(CatalogError, match="6 channels in the catalog but 7"):
            _model(s, "a", [("l1", 7)])
        with pytest.raises(CatalogError, match="distinct"):
            _model(s, "c", [("l", 1)] * 2)
        grown = _model(s, "a", LAYERS)
    assert grown.layer_order == tuple(NAMES) and [la.position for la in grown.layers] == [0, 1, 2]
    with cat.session() as s:
        assert store.read_model(s, grown.id) == grown


def test_concepts_and_example_images(cat):
    images = [("x" * 64, "/img/a.png"), ("y" * 64, "/img/b.png")]
    with cat.session() as s, s.begin():
        cid = store.ensure_concept(s, "star", "a five-pointed star")
        assert store.ensure_concept(s, "star") == cid
        assert store.write_example_images(s, cid, "s" * 64, images) == 2
        assert store.write_example_images(s, cid, "s" * 64, images) == 0
        with pytest.raises(CatalogError, match="other images"):
            store.write_example_images(s, cid, "s" * 64, images[::-1])
        with pytest.raises(NotFound):
            store.write_example_images(s, 999, "s" * 64, images)
        assert s.execute(sa.text("SELECT count(*) FROM example_image")).scalar() == 2


def test_runs_write_read_find_list_and_failures(cat):
    with cat.session() as s, s.begin():
        model, cid, run_id = _setup(s)
        failed = store.record_failed_run(
            s, model=model, concept_id=cid, error="CUDA out of memory", **_run_fields(provenance_key="q" * 64)
        )
    with cat.session() as s:
        run = store.read_run(s, run_id)
        assert (run.model, run.concept, run.status, run.widths) == ("toy", "star", "complete", (4, 6, 5))
        assert run.layer_names == tuple(NAMES) and run.params == {"method": "test"}
        assert run.started_at == dt.datetime(2025, 1, 1) and run.seconds == 2.5
        assert store.find_complete_run(s, "p" * 64).id == run_id
        assert store.find_complete_run(s, "q" * 64) is None  # failed runs are not reused
        assert [r.id for r in store.list_runs(s)] == [run_id]
        assert [r.id for r in store.list_runs(s, include_failed=True)] == [run_id, failed]
        assert store.list_runs(s, model="toy", concept="other") == []
        assert store.read_run(s, failed).error == "CUDA out of memory"
        with pytest.raises(CatalogError, match="failed: it has no scores"):
            store.read_run_matrices(s, failed)
        for bad in (lambda: store.read_run(s, 999), lambda: store.read_run_matrices(s, 999)):
            with pytest.raises(NotFound, match="no run 999"):
                bad()
    for bad, message in (({"params": {"x": object()}}, "JSON"), ({"layer_names": ["l0", "l0"]}, "distinct")):
        with cat.session() as s, s.begin(), pytest.raises(CatalogError, match=message):
            store.write_run(s, model=model, concept_id=cid, matrices=_matrices(), **_run_fields(**bad))
    fields = _run_fields()
    del fields["n_images"]
    for call in (
        lambda s: store.write_run(s, model=model, concept_id=cid, matrices=_matrices(), **fields),
        lambda s: store.record_failed_run(s, model=model, concept_id=cid, error="x", **fields),
        lambda s: store.write_run(s, model=model, concept_id=cid, matrices=_matrices(), **_run_fields(k=2)),
    ):  # a missing or unknown keyword stays a TypeError, and nothing is written
        with cat.session() as s, s.begin(), pytest.raises(TypeError, match="run fields"):
            call(s)
    with cat.session() as s:
        assert s.execute(sa.text("SELECT count(*) FROM run")).scalar() == 2


def test_circuits_interventions_and_views(cat):
    with cat.session() as s, s.begin():
        model, cid, run_id = _setup(s)
        c1 = _circuit(s, run_id, [[0, 1], [2, 3], [4, 0]])
        c2 = _circuit(s, run_id, [[1, 2], [3, 5], [0, 1]])
        c3 = _circuit(s, run_id, [[3], [0], [2]], k=1)
        iv = store.write_intervention(
            s,
            circuit_id=c1,
            kind="edge",
            params={"pair": 0},
            edge_fraction=0.125,
            baseline_edge_fraction=0.125,
            evaluations=[EvaluationRow("catfish:star", "e" * 64, 32, "accuracy", 0.9, 0.25, 0.875)],
        )
        with pytest.raises(CatalogError, match="distinct channels"):
            _circuit(s, run_id, [[0, 0], [1, 2], [1, 2]])
        with pytest.raises(CatalogError, match="in \\[0, 5\\)"):
            _circuit(s, run_id, [[0, 1], [1, 2], [1, 5]])
        with pytest.raises(CatalogError, match="kind"):
            store.write_intervention(
                s, circuit_id=c1, kind="zap", params={}, edge_fraction=0, baseline_edge_fraction=None, evaluations=[]
            )
        with pytest.raises(NotFound):
            store.write_intervention(
                s, circuit_id=999, kind="edge", params={}, edge_fraction=0, baseline_edge_fraction=None, evaluations=[]
            )
    with cat.session() as s:
        circuit = store.read_circuit(s, c1)
        assert circuit.channels == ((0, 1), (2, 3), (0, 4)) and circuit.k == (2, 2, 2)
        assert circuit.objective == 1.5 and circuit.objective_history == (1.0, 1.5, 1.5)
        assert (circuit.model, circuit.concept, circuit.widths) == ("toy", "star", (4, 6, 5))
        assert [c.id for c in store.find_circuits(s, model="toy")] == [c1, c2, c3]
        assert store.find_circuits(s, concept="none") == []
        [stored] = store.list_interventions(s, c1)
        assert stored.id == iv and stored.edge_fraction == 0.125
        assert stored.evaluations[0].baseline_value == 0.875
        with pytest.raises(NotFound):
            store.read_circuit(s, 999)
        # circuit_neurons_v against the stored channels
        members = {
            c.id: {(n, ch) for n, chans in zip(NAMES, c.channels) for ch in chans} for c in store.find_circuits(s)
        }
        rows = s.execute(sa.text("SELECT circuit_id, layer, channel FROM circuit_neurons_v")).all()
        assert set(rows) == {(cid, n, ch) for cid, pairs in members.items() for n, ch in pairs}
        # circuit_overlap_v against a plain Python Jaccard over the members
        overlap = s.execute(
            sa.text("SELECT circuit_a, circuit_b, shared, size_a, size_b, jaccard FROM circuit_overlap_v")
        ).all()
    expected = {}
    for a, b in itertools.combinations(sorted(members), 2):
        shared = len(members[a] & members[b])
        expected[(a, b)] = (shared, len(members[a]), len(members[b]), shared / len(members[a] | members[b]))
    _assert_overlap(overlap, expected)
    assert expected[(c1, c3)][0] == 0 and expected[(c1, c2)][0] == 3  # a disjoint pair is listed too


def _assert_overlap(rows, expected):
    got = {(r[0], r[1]): tuple(r[2:]) for r in rows}
    assert got.keys() == expected.keys()
    for key, (shared, size_a, size_b, jaccard) in expected.items():
        assert got[key][:3] == (shared, size_a, size_b) and got[key][3] == pytest.approx(jaccard)


def test_views_show_complete_runs_only_and_overlap_stays_within_a_model(cat):
    with cat.session() as s, s.begin():
        _, _, run_a = _setup(s)
        _, _, run_b = _setup(s, sha="b" * 64, key="r" * 64)  # same name, other weights: other model
        _circuit(s, run_a, [[0, 1], [2, 3], [4, 0]])
        _circuit(s, run_b, [[0, 1], [2, 3], [4, 0]])
    count = (
        "SELECT (SELECT count(*) FROM edges_v), (SELECT count(*) FROM circuit_neurons_v), "
        "(SELECT count(*) FROM circuit_overlap_v)"
    )
    with cat.session() as s:
        assert tuple(s.execute(sa.text(count)).one()) == (2 * _n_top_edges(), 12, 0)
    with cat.session() as s, s.begin():
        s.execute(sa.text("UPDATE run SET status = 'running' WHERE id = :r"), {"r": run_b})
    with cat.session() as s:
        assert tuple(s.execute(sa.text(count)).one()) == (_n_top_edges(), 6, 0)
        assert {r for (r,) in s.execute(sa.text("SELECT DISTINCT run_id FROM edges_v"))} == {run_a}


def test_delete_run_removes_its_rows_only(cat):
    with cat.session() as s, s.begin():
        _, _, keep = _setup(s)
        _, _, gone = _setup(s, key="g" * 64)
        kept_circuit = _circuit(s, keep, [[0, 1], [2, 3], [4, 0]])
        doomed = _circuit(s, gone, [[0, 1], [2, 3], [4, 0]])
        for circuit_id in (kept_circuit, doomed):
            store.write_intervention(
                s,
                circuit_id=circuit_id,
                kind="circuit",
                params={},
                edge_fraction=0.5,
                baseline_edge_fraction=None,
                evaluations=[EvaluationRow("x", "e" * 64, 1, "kl", None, 0.1, 0.2)],
            )
    with cat.session() as s, s.begin():
        store.delete_run(s, gone)
        with pytest.raises(NotFound):
            store.read_run(s, gone)
    with cat.session() as s, s.begin():
        with pytest.raises(NotFound):
            store.delete_run(s, gone)
    counts = {
        "run": 1,
        "circuit": 1,
        "intervention": 1,
        "evaluation": 1,
        "edge": _n_top_edges(),
        "circuit_neuron": 6,
        "circuit_edge": 8,
        "run_matrix": 2,
    }
    with cat.session() as s:
        for table, n in counts.items():
            assert s.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == n, table
        np.testing.assert_array_equal(store.read_run_matrices(s, keep)[1], _matrices()[1])
        assert store.read_circuit(s, kept_circuit).run_id == keep
