"""Migration 0004 on a catalog made at schema 0001 with real rows: refine, overlap, edges and the
readable views give the same answers after the upgrade, and a downgrade restores every edge row."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from _helpers_catalog import run_fields
from sqlalchemy.orm import Session

from catalog import bulk, migrate, store
from catalog.connect import build_engine, resolve_url
from catalog.edge_select import top_edge_mask
from catalog.engine import close_catalogs_of, open_catalog
from catalog.models import Circuit, Run
from ingest.cla.search import find_circuit
from queries.overlap import overlap_of_circuits, weighted_jaccard_matrix

LAYERS = [("a", 6), ("b", 9), ("c", 7), ("d", 5)]
NAMES = [n for n, _ in LAYERS]

CHANNELS = {  # circuit → (index of its run, channels per layer)
    "c1": (0, [[0, 1], [2, 3, 4], [1], [0, 4]]),
    "c2": (0, [[1], [3, 4], [1, 2], [4]]),
    "c3": (1, [[0, 5], [2, 3], [1, 6], [0]]),
    "c4": (1, [[2], [8], [0], [3]]),
}

# The internal-edge query of schema 0001 (queries.overlap before 0004), the reference for "before".
OLD_INTERNAL_EDGES = """
WITH members AS (SELECT circuit_id, neuron_id FROM circuit_neuron)
SELECT s.circuit_id, e.src_neuron_id, e.dst_neuron_id, e.score FROM edge e
JOIN circuit c ON c.run_id = e.run_id
JOIN members s ON s.circuit_id = c.id AND s.neuron_id = e.src_neuron_id
JOIN members d ON d.circuit_id = c.id AND d.neuron_id = e.dst_neuron_id
ORDER BY 1, 2, 3
"""


def _scores(rng, widths):
    out = []
    for m, n in zip(widths, widths[1:]):
        s = (0.18 * 10.0 ** -rng.gamma(2.0, 2.2, size=(m, n))).astype(np.float32)
        s[rng.random((m, n)) < 0.33] = 0
        out.append(s)
    return out


def _old_run(s, model, concept_id, matrices, *, drop=0.0, shuffle=False, seed=0, status="complete"):
    """A run as schema 0001 stored it: a `run` row and one `edge` row per neuron pair."""
    run = Run(model_id=model.id, concept_id=concept_id, status=status, **run_fields(f"{seed}" * 64, NAMES))
    s.add(run)
    s.flush()
    if status != "complete":
        return run.id
    ids = [model.layer(n).neuron_ids for n in NAMES]
    src = np.concatenate([np.repeat(a, len(b)) for a, b in zip(ids, ids[1:])])
    dst = np.concatenate([np.tile(b, len(a)) for a, b in zip(ids, ids[1:])])
    score = np.concatenate([m.ravel() for m in matrices])
    rng = np.random.default_rng(seed)
    keep = rng.random(len(score)) >= drop  # a 0001 catalog could miss rows: they read as 0
    order = rng.permutation(int(keep.sum())) if shuffle else np.arange(int(keep.sum()))
    bulk.insert_columns(
        s,
        "edge",
        {
            "run_id": np.full(len(order), run.id),
            "src_neuron_id": src[keep][order],
            "dst_neuron_id": dst[keep][order],
            "score": score[keep][order],
        },
    )
    for m in matrices:  # what the upgraded catalog must give back
        m[~keep[: m.size].reshape(m.shape)] = 0
        keep = keep[m.size :]
    return run.id


def _old_circuit(s, model, run_id, channels):
    circuit = Circuit(
        run_id=run_id,
        k=[len(c) for c in channels],
        fixed=None,
        sweeps=1,
        converged=True,
        objective=0.0,
        objective_history=[0.0],
    )
    s.add(circuit)
    s.flush()
    neurons = np.concatenate([model.layer(n).neuron_ids[list(c)] for n, c in zip(NAMES, channels)])
    bulk.insert_columns(s, "circuit_neuron", {"circuit_id": np.full(len(neurons), circuit.id), "neuron_id": neurons})
    return circuit.id


@pytest.fixture
def old_catalog(backend, request, tmp_path):
    """A catalog at schema 0001 with two complete runs (one sparse and shuffled), a failed run and
    four circuits, on each backend; returns (path or URL, engine, model, {run: matrices}, circuit ids)."""
    where = tmp_path / "old.duckdb" if backend == "duckdb" else request.getfixturevalue("empty_pg_url")
    yield from _old_catalog(where)


def _old_catalog(path):
    engine = build_engine(resolve_url(path), read_only=False, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        migrate.upgrade(conn, "0001")
    rng = np.random.default_rng(0)
    widths = [w for _, w in LAYERS]
    with Session(engine) as s, s.begin():
        model = store.ensure_model(s, name="toy", architecture="cnn", weights_sha256="0" * 64, layers=LAYERS)
        concept = store.ensure_concept(s, "star")
        runs = {}
        for seed, options in ((1, {}), (2, {"drop": 0.2, "shuffle": True})):
            matrices = _scores(rng, widths)
            runs[_old_run(s, model, concept, matrices, seed=seed, **options)] = matrices
        _old_run(s, model, concept, [], seed=3, status="failed")
        run_ids = list(runs)
        circuits = [_old_circuit(s, model, run_ids[r], ch) for r, ch in CHANNELS.values()]
    yield path, engine, model, runs, circuits
    engine.dispose()
    close_catalogs_of(path)


def test_upgrade_keeps_refine_overlap_and_views_and_downgrade_restores_rows(old_catalog):
    path, engine, model, runs, circuits = old_catalog
    with engine.connect() as conn:
        old = conn.execute(sa.text(OLD_INTERNAL_EDGES)).all()
        old_rows = conn.execute(
            sa.text("SELECT run_id, src_neuron_id, dst_neuron_id, score FROM edge ORDER BY 1, 2, 3")
        ).all()
    lookup = {c: i for i, c in enumerate(circuits)}
    index = np.array([lookup[r[0]] for r in old])
    keys = np.array([(r[1] << 32) | r[2] for r in old], dtype=np.int64)
    scores = np.array([r[3] for r in old], dtype=np.float32)  # psycopg gives REAL as its shortest decimal
    before_weighted = weighted_jaccard_matrix(index, keys, scores, len(circuits))

    with engine.begin() as conn:
        migrate.upgrade(conn)
    cat = open_catalog(path)
    with cat.session() as s:
        for run_id, matrices in runs.items():
            for m, back in zip(matrices, store.read_run_matrices(s, run_id)):
                np.testing.assert_array_equal(back.view(np.uint32), m.view(np.uint32))
        after_weighted = overlap_of_circuits(s, circuits, "weighted")
        new_internal = s.execute(
            sa.text("SELECT circuit_id, src_neuron_id, dst_neuron_id, score FROM circuit_edge ORDER BY 1, 2, 3")
        ).all()
        tops = s.execute(sa.text("SELECT run_id, src_channel, dst_channel, score, src_layer FROM edges_v")).all()
        n_circuit_edges_v = s.execute(sa.text("SELECT count(*) FROM circuit_edges_v")).scalar()
    np.testing.assert_allclose(after_weighted, before_weighted, rtol=1e-12)
    new = {tuple(r[:3]): r[3] for r in new_internal}
    assert {tuple(r[:3]): r[3] for r in old}.items() <= new.items()
    assert all(v == 0 for k, v in new.items() if k not in {tuple(r[:3]) for r in old})  # pairs 0001 lacked
    pairs = [sum(len(a) * len(b) for a, b in zip(ch, ch[1:])) for _, ch in CHANNELS.values()]
    assert len(new) == n_circuit_edges_v == sum(pairs)
    expected_tops = sum(int(top_edge_mask(m, 4).sum()) for ms in runs.values() for m in ms)
    assert len(tops) == expected_tops
    for run_id, src_channel, dst_channel, score, src_layer in tops:
        assert runs[run_id][NAMES.index(src_layer)][src_channel, dst_channel] == score

    first = next(iter(runs))
    from ingest.refinement import refine

    circuit_id, refined = refine(cat, first, 2)
    assert refined.channels == find_circuit(runs[first], [2] * len(NAMES)).channels
    with cat.session() as s:
        graph_edges = s.execute(
            sa.text("SELECT count(*) FROM circuit_edge WHERE circuit_id = :c"), {"c": circuit_id}
        ).scalar()
    assert graph_edges == 3 * 2 * 2
    cat.close()
    close_catalogs_of(path)

    with engine.begin() as conn:
        migrate.downgrade(conn, "0003")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT run_id, src_neuron_id, dst_neuron_id, score FROM edge ORDER BY 1, 2, 3")
        ).all()
        tables = set(sa.inspect(conn).get_table_names())
    assert not {"run_matrix", "circuit_edge"} & tables
    full = {(r[0], r[1], r[2]): r[3] for r in rows}
    assert len(full) == sum(m.size for ms in runs.values() for m in ms)  # every pair, missing ones as 0
    assert all(full[(r[0], r[1], r[2])] == r[3] for r in old_rows)
    assert sum(1 for v in full.values() if v != 0) == sum(1 for r in old_rows if r[3] != 0)
