"""Edge storage: the matrix codec (bit-exact), top-edge and circuit-edge selection against plain
loops, circuit edges stored with circuits, and run_top_edges against a sort-everything reference."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from _helpers_catalog import write_circuit, write_run

from catalog import store
from catalog.edge_select import circuit_pairs, top_edge_mask
from catalog.errors import CatalogError
from catalog.matrix_codec import CODEC, decode_matrix, encode_matrix
from queries.graphs import EdgeSelection, circuit_graph, run_top_edges
from queries.overlap import internal_edges, overlap_of_circuits, weighted_jaccard_matrix

LAYERS = [("a", 7), ("b", 9), ("c", 6)]


def _cla_like(rng, shape, zeros=0.33):
    """Non-negative scores over many binades with a third exact zeros (like googlenet's)."""
    scores = (0.18 * 10.0 ** -rng.gamma(2.0, 2.2, size=shape)).astype(np.float32)
    scores[rng.random(shape) < zeros] = 0
    return scores


def test_codec_round_trips_every_bit_pattern():
    rng = np.random.default_rng(0)
    odd = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-17, 3.4e38, np.inf, -np.inf, np.nan, 0.18, -1.0], dtype=np.float32)
    payload_nan = np.array([0x7FC00123, 0xFFFFFFFF], dtype=np.uint32).view(np.float32)
    cases = [
        _cla_like(rng, (37, 53)),
        rng.standard_normal((5, 4)).astype(np.float32),
        np.concatenate([odd, payload_nan]).reshape(1, -1),
        np.zeros((6, 3), np.float32),
        np.zeros((0, 4), np.float32),
        np.full((2, 2), 7.5, np.float32),
    ]
    for m in cases:
        back = decode_matrix(encode_matrix(m), CODEC)
        assert back.dtype == np.float32 and back.shape == m.shape and back.flags.writeable
        np.testing.assert_array_equal(back.view(np.uint32), m.view(np.uint32))
    big = _cla_like(rng, (480, 512))
    assert len(encode_matrix(big)) < 0.75 * big.nbytes  # the zeros and exponents compress


def test_codec_refuses_damage_and_unknown_codecs():
    blob = encode_matrix(np.ones((4, 4), np.float32))
    with pytest.raises(CatalogError, match="unknown score matrix codec"):
        decode_matrix(blob, "f16-lossy")
    for bad in (blob[:10], b"XXXX" + blob[4:], blob[:-3]):
        with pytest.raises(CatalogError, match="damaged"):
            decode_matrix(bad)
    with pytest.raises(CatalogError, match="2-D"):
        encode_matrix(np.ones(3, np.float32))


def _reference_top(m, k):
    """Plain loops: per row and per column, the k highest (ties to the lower index), zeros dropped."""
    keep = np.zeros(m.shape, dtype=bool)
    for i in range(m.shape[0]):
        for j in sorted(range(m.shape[1]), key=lambda j: (-m[i, j], j))[:k]:
            keep[i, j] |= m[i, j] != 0
    for j in range(m.shape[1]):
        for i in sorted(range(m.shape[0]), key=lambda i: (-m[i, j], i))[:k]:
            keep[i, j] |= m[i, j] != 0
    return keep


def test_top_edge_mask_matches_plain_loops_with_ties_and_zeros():
    rng = np.random.default_rng(1)
    ties = np.round(rng.random((9, 11)) * 3).astype(np.float32)  # values 0…3: many ties and zeros
    for m in (_cla_like(rng, (12, 17)), ties, rng.standard_normal((6, 5)).astype(np.float32), ties[:1]):
        for k in (0, 1, 3, 4, 20):
            np.testing.assert_array_equal(top_edge_mask(m, k), _reference_top(m, k))
    equal = np.full((3, 6), 2.0, np.float32)  # all tied: each row keeps column 0, each column row 0
    expected = np.zeros((3, 6), dtype=bool)
    expected[0, :] = expected[:, 0] = True
    np.testing.assert_array_equal(top_edge_mask(equal, 1), expected)
    with pytest.raises(CatalogError, match="top_k"):
        top_edge_mask(equal, -1)


def test_circuit_pairs_match_plain_loops():
    rng = np.random.default_rng(2)
    widths = [w for _, w in LAYERS]
    ids = [np.arange(100 * i, 100 * i + w) for i, w in enumerate(widths)]
    matrices = [_cla_like(rng, (a, b)) for a, b in zip(widths, widths[1:])]
    channels = [[5, 1], [0, 8, 3], [2]]
    src, dst, score = circuit_pairs(ids, matrices, channels)
    expected = {
        (ids[i][a], ids[i + 1][b]): matrices[i][a, b] for i in range(2) for a in channels[i] for b in channels[i + 1]
    }
    assert dict(zip(zip(src.tolist(), dst.tolist()), score.tolist())) == pytest.approx(expected)
    assert len(src) == len(expected) == 2 * 3 + 3 * 1


def _write(s, matrices, channel_sets):
    model = store.ensure_model(s, name="toy", architecture="cnn", weights_sha256="0" * 64, layers=LAYERS)
    run_id = write_run(s, model, store.ensure_concept(s, "star"), matrices, "2" * 64, seconds=0.1)
    circuits = [write_circuit(s, run_id, ch, history=[0.0]) for ch in channel_sets]
    return model, run_id, circuits


def test_circuit_edges_are_stored_with_the_circuit_and_go_with_its_run(any_cat):
    cat = any_cat
    rng = np.random.default_rng(3)
    widths = [w for _, w in LAYERS]
    matrices = [_cla_like(rng, (a, b)) for a, b in zip(widths, widths[1:])]
    channel_sets = [[[0, 6], [1, 2, 8], [5]], [[3], [2], [0, 1]]]
    with cat.session() as s, s.begin():
        model, run_id, circuits = _write(s, matrices, channel_sets)
    ids = [model.layer(n).neuron_ids for n, _ in LAYERS]
    with cat.session() as s:
        table = internal_edges(s, circuits)
        graph = circuit_graph(s, circuits[0])
        view = s.execute(sa.text("SELECT count(*), sum(score) FROM circuit_edges_v")).one()
        weighted = overlap_of_circuits(s, circuits, "weighted")
        assert internal_edges(s, []).num_rows == 0
    got = {(c, a, b): x for c, a, b, x in zip(*(table.column(i).to_pylist() for i in range(4)))}
    expected = {}
    for cid, ch in zip(circuits, channel_sets):
        src, dst, score = circuit_pairs(ids, matrices, ch)
        expected |= {(cid, a, b): x for a, b, x in zip(src.tolist(), dst.tolist(), score.tolist())}
    assert got == expected and view[0] == len(expected)
    assert weighted.shape == (2, 2) and weighted[0, 0] == 1 and 0 <= weighted[0, 1] < 1
    assert graph.number_of_edges() == 2 * 3 + 3 * 1
    assert graph.edges["a:0", "b:8"]["score"] == pytest.approx(float(matrices[0][0, 8]))
    with cat.session() as s, s.begin():
        store.delete_run(s, run_id)
    with cat.session() as s:
        for t in ("circuit_edge", "run_matrix", "edge"):
            assert s.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() == 0, t


def _reference_top_edges(ids, matrices, selection):
    """Sort everything, as the SQL over every edge row did."""
    rows = [
        (float(m[a, b]), int(ids[i][a]), int(ids[i + 1][b]))
        for i, m in enumerate(matrices)
        for a in range(m.shape[0])
        for b in range(m.shape[1])
    ]
    strongest = sorted(rows, key=lambda r: (-r[0], r[1], r[2]))
    if selection.threshold is not None:
        return [r for r in strongest if r[0] >= selection.threshold]
    if selection.top_fraction is not None:
        return strongest[: int(np.ceil(selection.top_fraction * len(rows)))]
    end = 1 if selection.direction == "out" else 2
    count: dict[int, int] = {}
    kept = []
    for r in sorted(rows, key=lambda r: (r[end], -r[0], r[3 - end])):
        count[r[end]] = count.get(r[end], 0) + 1
        if count[r[end]] <= selection.per_neuron:
            kept.append(r)
    return sorted(kept, key=lambda r: (-r[0], r[1], r[2]))


def test_run_top_edges_match_a_sort_everything_reference(any_cat):
    cat = any_cat
    rng = np.random.default_rng(4)
    widths = [w for _, w in LAYERS]
    matrices = [np.round(_cla_like(rng, (a, b)) * 300) / 300 for a, b in zip(widths, widths[1:])]  # ties
    with cat.session() as s, s.begin():
        model, run_id, _ = _write(s, matrices, [])
    ids = [model.layer(n).neuron_ids for n, _ in LAYERS]
    selections = [
        EdgeSelection(top_fraction=0.1),
        EdgeSelection(top_fraction=1.0),
        EdgeSelection(threshold=0.01),
        EdgeSelection(per_neuron=2),
        EdgeSelection(per_neuron=3, direction="in"),
        EdgeSelection(per_neuron=50),
    ]
    with cat.session() as s:
        for sel in selections:
            table = run_top_edges(s, run_id, sel)
            got = list(zip(*(table.column(c).to_pylist() for c in ("score", "src_neuron_id", "dst_neuron_id"))))
            want = _reference_top_edges(ids, [m.astype(np.float32) for m in matrices], sel)
            assert [(pytest.approx(a), b, c) for a, b, c in want] == got, sel


def test_matrices_and_top_edges_round_trip_on_each_backend(any_cat):
    rng = np.random.default_rng(5)
    widths = [w for _, w in LAYERS]
    matrices = [_cla_like(rng, (a, b)) for a, b in zip(widths, widths[1:])]
    matrices[0][0, 0] = -0.0
    with any_cat.session() as s, s.begin():
        model, run_id, _ = _write(s, matrices, [])
    with any_cat.session() as s:
        back = store.read_run_matrices(s, run_id)
        rows = s.execute(sa.text("SELECT src_layer, src_channel, dst_channel, score FROM edges_v")).all()
        arrow = store.read_run_edges_arrow(s, run_id)
    for m, b in zip(matrices, back):
        np.testing.assert_array_equal(b.view(np.uint32), m.view(np.uint32))
    names = [n for n, _ in LAYERS]
    assert len(rows) == sum(int(top_edge_mask(m, 4).sum()) for m in matrices)
    assert all(matrices[names.index(layer)][a, b] == x for layer, a, b, x in rows)
    assert arrow.num_rows == sum(m.size for m in matrices)


def test_weighted_jaccard_matches_brute_force_with_many_sets_per_key():
    rng = np.random.default_rng(7)
    n, universe = 12, 30
    index, keys = [], []
    for i in range(n):
        chosen = rng.choice(universe, size=int(rng.integers(0, 20)), replace=False)  # some sets empty
        index += [i] * len(chosen)
        keys += chosen.tolist()
    index, keys = np.array(index, dtype=np.int64), np.array(keys, dtype=np.int64) << 32
    scores = rng.random(len(keys)) * (rng.random(len(keys)) < 0.9)  # some zero weights
    got = weighted_jaccard_matrix(index, keys, scores, n)
    weights = np.zeros((n, universe))
    weights[index, keys >> 32] = scores
    totals = weights.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normal = weights / totals
    for a in range(n):
        for b in range(n):
            if a == b:
                assert got[a, b] == 1
            elif totals[a] == 0 or totals[b] == 0:
                assert np.isnan(got[a, b])
            else:
                expected = np.minimum(normal[a], normal[b]).sum() / np.maximum(normal[a], normal[b]).sum()
                assert got[a, b] == pytest.approx(expected, rel=1e-12)


def test_write_run_takes_the_top_k_of_its_edge_rows(cat):
    rng = np.random.default_rng(8)
    widths = [w for _, w in LAYERS]
    matrices = [_cla_like(rng, (a, b)) for a, b in zip(widths, widths[1:])]
    with cat.session() as s, s.begin():
        model = store.ensure_model(s, name="toy", architecture="cnn", weights_sha256="0" * 64, layers=LAYERS)
        runs = {
            k: write_run(s, model, store.ensure_concept(s, "star"), matrices, f"{k}" * 64, seconds=0.1, edge_top_k=k)
            for k in (0, 2)
        }
    with cat.session() as s:
        for k, run_id in runs.items():
            n = s.execute(sa.text("SELECT count(*) FROM edge WHERE run_id = :r"), {"r": run_id}).scalar()
            assert n == sum(int(top_edge_mask(m, k).sum()) for m in matrices)
            assert all(np.array_equal(a, b) for a, b in zip(store.read_run_matrices(s, run_id), matrices))


@pytest.mark.pg
def test_postgresql_finds_and_deletes_a_runs_top_edges_through_its_block_range_index(pg_url):
    from catalog.engine import open_catalog

    cat = open_catalog(pg_url)
    with cat.writing() as s:  # six runs' rows (~108 pages each), each written together as ingest's COPY does
        for run in range(1, 7):
            s.execute(sa.text("INSERT INTO edge SELECT :r, g, g + 1, 0.5 FROM generate_series(1, 20000) g"), {"r": run})
    with cat.writing() as s:
        s.execute(sa.text("SELECT brin_summarize_new_values('ix_edge_run_id')"))  # autosummarize does it later
        method = s.execute(
            sa.text(
                "SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.relname = 'ix_edge_run_id'"
            )
        ).scalar()
        s.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(r[0] for r in s.execute(sa.text("EXPLAIN ANALYZE SELECT count(*) FROM edge WHERE run_id = 2")))
        s.execute(sa.text("DELETE FROM edge WHERE run_id = 2"))
    with cat.session() as s:
        counts = dict(s.execute(sa.text("SELECT run_id, count(*) FROM edge GROUP BY run_id")).all())
    assert method == "brin" and "Bitmap Index Scan on ix_edge_run_id" in plan
    # only the block ranges (128 pages) that hold run 2 are read: less than half the other runs' rows
    removed = int(plan.split("Rows Removed by Index Recheck: ")[1].split()[0]) if "Index Recheck: " in plan else 0
    assert removed < 2 * 20000
    assert counts == {1: 20000, 3: 20000, 4: 20000, 5: 20000, 6: 20000}
