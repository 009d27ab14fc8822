"""Bulk I/O of runs (matrix blobs + top edges) against plain row-by-row references, and the
PostgreSQL COPY codec."""

from __future__ import annotations

import datetime as dt
import struct

import numpy as np
import pytest
import sqlalchemy as sa

from catalog import bulk, pg_copy, store
from catalog.edge_select import DEFAULT_TOP_K, top_edge_mask
from catalog.engine import open_catalog
from catalog.errors import CatalogError


@pytest.fixture
def cat(any_cat):
    """Every test here runs on DuckDB and on PostgreSQL (see conftest `any_cat`)."""
    return any_cat


WIDTHS = [("a", 3), ("b.c", 5), ("d", 4), ("e", 2)]


def _model(s):
    return store.ensure_model(s, name="toy", architecture="cnn", weights_sha256="0" * 64, layers=WIDTHS)


def _run(s, model, matrices, layers=("a", "b.c", "d", "e"), key="2" * 64):
    return store.write_run(
        s,
        model=model,
        concept_id=store.ensure_concept(s, "star"),
        layer_names=list(layers),
        params={"method": "test"},
        image_set_sha256="1" * 64,
        n_images=4,
        provenance_key=key,
        library_versions={"numpy": np.__version__},
        device="cpu",
        started_at=dt.datetime(2025, 1, 1),
        seconds=0.5,
        matrices=matrices,
    )


def _random_matrices(seed, widths):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((m, n)).astype(np.float32) for m, n in zip(widths, widths[1:])]


def _reference_matrices(session, run_id, widths, layers):
    """Row by row through the readable view: S_i[src_channel, dst_channel] = score, NaN elsewhere."""
    out = [np.full((m, n), np.nan, dtype=np.float32) for m, n in zip(widths, widths[1:])]
    rows = session.execute(
        sa.text("SELECT src_layer, src_channel, dst_layer, dst_channel, score FROM edges_v WHERE run_id = :r"),
        {"r": run_id},
    )
    for src_layer, src_channel, dst_layer, dst_channel, score in rows:
        i = layers.index(src_layer)
        assert layers[i + 1] == dst_layer
        out[i][src_channel, dst_channel] = score
    return out


def test_matrices_round_trip_and_match_the_row_reference(cat):
    """Matrices come back whole; `edges_v` shows their top edges; the Arrow read has every pair."""
    widths = [8, 9, 7, 3]
    layers = [("a", 8), ("b.c", 9), ("d", 7), ("e", 3)]
    matrices = _random_matrices(0, widths)
    with cat.session() as s, s.begin():
        model = store.ensure_model(s, name="toy8", architecture="cnn", weights_sha256="8" * 64, layers=layers)
        run_id = _run(s, model, matrices)
    with cat.session() as s:
        back = store.read_run_matrices(s, run_id)
        reference = _reference_matrices(s, run_id, widths, [n for n, _ in layers])
        edges = store.read_run_edges_arrow(s, run_id)
    for m, b, r in zip(matrices, back, reference):
        assert b.dtype == np.float32 and b.shape == m.shape
        np.testing.assert_array_equal(b, m)
        keep = top_edge_mask(m, DEFAULT_TOP_K)
        assert 0 < keep.sum() <= m.size and (keep.sum() < m.size or min(m.shape) <= DEFAULT_TOP_K)
        np.testing.assert_array_equal(np.where(keep, m, np.nan), r)
    assert edges.num_rows == sum(m.size for m in matrices)
    names = [n for n, _ in layers]
    i = np.array([names.index(x) for x in edges.column("src_layer").to_pylist()])
    assert [names.index(x) for x in edges.column("dst_layer").to_pylist()] == list(i + 1)
    sc, dc = (edges.column(c).to_numpy() for c in ("src_channel", "dst_channel"))
    expected = np.array([matrices[a][b, c] for a, b, c in zip(i, sc, dc)], dtype=np.float32)
    np.testing.assert_array_equal(edges.column("score").to_numpy(), expected)
    ids = [model.layer(n).neuron_ids for n in names]
    np.testing.assert_array_equal(edges.column("src_neuron_id").to_numpy(), [ids[a][b] for a, b in zip(i, sc)])
    np.testing.assert_array_equal(edges.column("dst_neuron_id").to_numpy(), [ids[a + 1][c] for a, c in zip(i, dc)])


def test_subset_of_layers(cat):
    """A run over some of the model's layers is stored and read back with those layers' widths."""
    with cat.session() as s, s.begin():
        model = _model(s)
        matrices = _random_matrices(1, [3, 4])
        run_id = _run(s, model, matrices, layers=("a", "d"))
    with cat.session() as s:
        np.testing.assert_array_equal(store.read_run_matrices(s, run_id)[0], matrices[0])
        assert store.read_run(s, run_id).widths == (3, 4)
        rows = s.execute(sa.text("SELECT pair, src_layer_id, dst_layer_id, n_src, n_dst FROM run_matrix")).all()
    assert rows == [(0, model.layer("a").id, model.layer("d").id, 3, 4)]


def test_scores_round_trip_bit_exact_and_edge_holds_the_top_edges(cat):
    """Awkward float32 values survive bit for bit; `edge` holds exactly `top_edge_mask`'s entries."""
    widths = [w for _, w in WIDTHS]
    matrices = [np.abs(m) for m in _random_matrices(6, widths)]
    matrices[0][0, :] = 0.0  # a dead source: no top edges
    matrices[1][:, 2] = np.float32(1e-45)  # subnormals
    matrices[1][0, 0], matrices[1][1, 1] = -0.0, np.float32(1e-17)
    with cat.session() as s, s.begin():
        run_id = _run(s, _model(s), matrices)
    with cat.session() as s:
        back = store.read_run_matrices(s, run_id)
        top = _reference_matrices(s, run_id, widths, [n for n, _ in WIDTHS])
    for m, b, t in zip(matrices, back, top):
        np.testing.assert_array_equal(b.view(np.uint32), m.view(np.uint32))
        keep = top_edge_mask(m, DEFAULT_TOP_K)
        np.testing.assert_array_equal(~np.isnan(t), keep)
        np.testing.assert_array_equal(t[keep], m[keep])
    assert np.isnan(top[0][0]).all()


def test_top_k_is_set_per_write_and_recorded(cat):
    widths = [w for _, w in WIDTHS]
    matrices = [np.abs(m) + 1 for m in _random_matrices(8, widths)]
    with cat.session() as s, s.begin():
        model = _model(s)
        ids = [la.neuron_ids for la in model.layers]
        run_id = _run(s, model, [np.zeros_like(m) for m in matrices])
        bulk.delete_edges(s, run_id)
        written = bulk.write_edge_matrices(s, run_id, ids, matrices, top_k=1)
        with pytest.raises(CatalogError, match="top_k"):
            bulk.write_edge_matrices(s, run_id, ids, matrices, top_k=-1)
    with cat.session() as s:
        n = s.execute(sa.text("SELECT count(*) FROM edge WHERE run_id = :r"), {"r": run_id}).scalar()
        ks = s.execute(sa.text("SELECT DISTINCT top_k FROM run_matrix WHERE run_id = :r"), {"r": run_id}).all()
        back = store.read_run_matrices(s, run_id)
    assert n == written == sum(int(top_edge_mask(m, 1).sum()) for m in matrices) and ks == [(1,)]
    for m, b in zip(matrices, back):
        np.testing.assert_array_equal(b, m)
        b[0, 0] = 7.0  # callers may edit what they get back


def test_missing_or_mismatched_matrices_are_reported(cat):
    with cat.session() as s, s.begin():
        model = _model(s)
        run_id = _run(s, model, [np.ones((3, 4), np.float32)], layers=("a", "d"))
        s.execute(sa.text("UPDATE run_matrix SET n_dst = 5 WHERE run_id = :r"), {"r": run_id})
    with cat.session() as s, pytest.raises(CatalogError, match="shapes"):
        store.read_run_matrices(s, run_id)
    with cat.session() as s, s.begin():
        s.execute(sa.text("DELETE FROM run_matrix WHERE run_id = :r"), {"r": run_id})
    with cat.session() as s, pytest.raises(CatalogError, match="its layers need"):
        store.read_run_matrices(s, run_id)


def test_bad_matrices_are_refused_and_nothing_is_written(cat):
    widths = [w for _, w in WIDTHS]
    bad = _random_matrices(2, widths)
    bad[1][0, 0] = np.nan
    cases = [
        (bad, "finite"),
        (_random_matrices(2, widths)[:2], "need 3 score matrices"),
        ([m.T for m in _random_matrices(2, widths)], "shape"),
    ]
    for matrices, message in cases:
        with pytest.raises(CatalogError, match=message), cat.session() as s, s.begin():
            _run(s, _model(s), matrices)
    with cat.session() as s:
        for table in ("run", "edge", "run_matrix"):
            assert s.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0


def test_crash_before_commit_leaves_no_run(cat):
    with pytest.raises(KeyboardInterrupt), cat.session() as s, s.begin():
        _run(s, _model(s), _random_matrices(3, [w for _, w in WIDTHS]))
        raise KeyboardInterrupt  # Ctrl-C after the bulk write, before commit
    with cat.session() as s:
        for table in ("model", "neuron", "run", "edge", "run_matrix"):
            assert s.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0


def test_allocate_ids_and_insert_columns(cat):
    with cat.session() as s, s.begin():
        ids = bulk.allocate_ids(s, "concept_id_seq", 5)
        assert ids.dtype == np.int64 and len(np.unique(ids)) == 5
        assert list(ids) == sorted(ids)
        with pytest.raises(CatalogError, match="different lengths"):
            bulk.insert_columns(s, "neuron", {"id": [1, 2], "layer_id": [1]})
        with pytest.raises(CatalogError, match="no columns"):
            bulk.insert_columns(s, "neuron", {"nope": [1]})
        assert bulk.insert_columns(s, "edge", {"run_id": [], "score": []}) == 0


def test_postgres_binary_copy_encoding_matches_struct_reference():
    ints = np.array([1, -2, 2_000_000_000], dtype=np.int32)
    floats = np.array([0.5, -1.25, np.float32(3.1e-5)], dtype=np.float32)
    data = b"".join(pg_copy.encode_chunks([ints, floats], chunk_rows=2))
    expected = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
    for i, f in zip(ints.tolist(), floats.tolist()):
        expected += struct.pack(">hiiif", 2, 4, i, 4, f)
    expected += struct.pack(">h", -1)
    assert data == expected
    back = pg_copy.decode(data, (">i4", ">f4"))
    np.testing.assert_array_equal(back[0], ints)
    np.testing.assert_array_equal(back[1], floats)
    assert back[0].dtype == np.int32 and back[1].dtype.byteorder in "=<|"
    with pytest.raises(CatalogError):
        pg_copy.decode(data, (">i4", ">i8"))
    empty = b"".join(pg_copy.encode_chunks([ints[:0], floats[:0]]))
    assert [len(a) for a in pg_copy.decode(empty, (">i4", ">f4"))] == [0, 0]


def test_duckdb_words_read_back_in_any_row_order_and_gaps_are_reported(catalog_path):
    """On DuckDB the blobs are 8-byte word rows (catalog.matrix_store): order is restored by seq."""
    cat = open_catalog(catalog_path)
    widths = [w for _, w in WIDTHS]
    matrices = _random_matrices(9, widths)
    with cat.session() as s, s.begin():
        run_id = _run(s, _model(s), matrices)
        s.execute(sa.text("CREATE TEMP TABLE w AS SELECT * FROM run_matrix_word WHERE run_id = :r"), {"r": run_id})
        s.execute(sa.text("DELETE FROM run_matrix_word WHERE run_id = :r"), {"r": run_id})
        s.execute(sa.text("INSERT INTO run_matrix_word SELECT * FROM w ORDER BY seq DESC"))
        assert s.execute(sa.text("SELECT count(*) FROM run_matrix WHERE scores IS NOT NULL")).scalar() == 0
    with cat.session() as s:
        for m, b in zip(matrices, store.read_run_matrices(s, run_id)):
            np.testing.assert_array_equal(b, m)
    with cat.session() as s, s.begin():
        s.execute(sa.text("DELETE FROM run_matrix_word WHERE run_id = :r AND seq = 3"), {"r": run_id})
    with cat.session() as s, pytest.raises(CatalogError, match="matrix words are incomplete"):
        store.read_run_matrices(s, run_id)
    cat.close()
