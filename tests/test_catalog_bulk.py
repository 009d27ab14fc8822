"""Bulk edge I/O against plain row-by-row references, and the PostgreSQL COPY codec."""

from __future__ import annotations

import datetime as dt
import struct

import numpy as np
import pytest
import sqlalchemy as sa

from catalog import bulk, pg_copy, store
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
        s, model=model, concept_id=store.ensure_concept(s, "star"), layer_names=list(layers),
        params={"method": "test"}, image_set_sha256="1" * 64, n_images=4, provenance_key=key,
        library_versions={"numpy": np.__version__}, device="cpu", started_at=dt.datetime(2025, 1, 1),
        seconds=0.5, matrices=matrices,
    )  # fmt: skip


def _random_matrices(seed, widths):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((m, n)).astype(np.float32) for m, n in zip(widths, widths[1:])]


def _reference_matrices(session, run_id, widths, layers):
    """Row by row through the readable view: S_i[src_channel, dst_channel] = score."""
    out = [np.full((m, n), np.nan, dtype=np.float32) for m, n in zip(widths, widths[1:])]
    rows = session.execute(
        sa.text(
            "SELECT src_layer, src_channel, dst_layer, dst_channel, score FROM edges_v WHERE run_id = :r"
        ),
        {"r": run_id},
    )
    for src_layer, src_channel, dst_layer, dst_channel, score in rows:
        i = layers.index(src_layer)
        assert layers[i + 1] == dst_layer
        out[i][src_channel, dst_channel] = score
    return out


def test_matrices_round_trip_and_match_the_row_reference(cat):
    widths = [w for _, w in WIDTHS]
    matrices = _random_matrices(0, widths)
    with cat.session() as s, s.begin():
        run_id = _run(s, _model(s), matrices)
    with cat.session() as s:
        back = store.read_run_matrices(s, run_id)
        reference = _reference_matrices(s, run_id, widths, [n for n, _ in WIDTHS])
        edges = store.read_run_edges_arrow(s, run_id)
    for m, b, r in zip(matrices, back, reference):
        assert b.dtype == np.float32 and b.shape == m.shape
        np.testing.assert_array_equal(b, m)
        np.testing.assert_array_equal(r, m)
    assert edges.num_rows == sum(m.size for m in matrices)
    names = [n for n, _ in WIDTHS]
    for row in edges.to_pylist()[::7]:
        i = names.index(row["src_layer"])
        assert row["dst_layer"] == names[i + 1]
        assert row["score"] == matrices[i][row["src_channel"], row["dst_channel"]]


def test_subset_of_layers_and_sparse_edges(cat):
    """A run over some of the model's layers; edges written one by one pair are read back dense."""
    with cat.session() as s, s.begin():
        model = _model(s)
        matrices = _random_matrices(1, [3, 4])
        run_id = _run(s, model, matrices, layers=("a", "d"))
    with cat.session() as s:
        np.testing.assert_array_equal(store.read_run_matrices(s, run_id)[0], matrices[0])
        assert store.read_run(s, run_id).widths == (3, 4)
    with cat.session() as s, s.begin():
        a, d = model.layer("a").neuron_ids, model.layer("d").neuron_ids
        other = _run(s, model, [np.zeros((3, 4), np.float32)], layers=("a", "d"), key="3" * 64)
        bulk.delete_edges(s, other)
        bulk.write_edges(s, other, np.array([a[2], a[0]]), np.array([d[1], d[3]]), np.array([5.0, -1.0]))
    with cat.session() as s:
        expect = np.zeros((3, 4), np.float32)
        expect[2, 1], expect[0, 3] = 5.0, -1.0
        np.testing.assert_array_equal(store.read_run_matrices(s, other)[0], expect)


def test_shuffled_rows_take_the_general_path_and_agree(cat):
    """All edges present but not in the written order: the scatter path must give the same."""
    widths = [w for _, w in WIDTHS]
    matrices = _random_matrices(4, widths)
    with cat.session() as s, s.begin():
        model = _model(s)
        in_order = _run(s, model, matrices)
        shuffled = _run(s, model, [np.zeros_like(m) for m in matrices], key="3" * 64)
        bulk.delete_edges(s, shuffled)
        ids = [la.neuron_ids for la in model.layers]
        src = np.concatenate([np.repeat(a, len(b)) for a, b in zip(ids, ids[1:])])
        dst = np.concatenate([np.tile(b, len(a)) for a, b in zip(ids, ids[1:])])
        score = np.concatenate([m.ravel() for m in matrices])
        order = np.random.default_rng(5).permutation(len(score))
        bulk.write_edges(s, shuffled, src[order], dst[order], score[order])
    with cat.session() as s:
        fast_path, general_path = store.read_run_matrices(s, in_order), store.read_run_matrices(s, shuffled)
        for fast, general, m in zip(fast_path, general_path, matrices):
            np.testing.assert_array_equal(fast, m)
            np.testing.assert_array_equal(general, m)
            fast[0, 0] = general[0, 0] = 1.0  # callers may edit what they get back


def test_edges_outside_the_run_layers_are_reported(cat):
    with cat.session() as s, s.begin():
        model = _model(s)
        run_id = _run(s, model, [np.ones((3, 4), np.float32)], layers=("a", "d"))
        b = model.layer("b.c").neuron_ids
        bulk.write_edges(s, run_id, b[:1], b[1:2], np.ones(1))
    with cat.session() as s, pytest.raises(CatalogError, match="outside the run's layers"):
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
        assert s.execute(sa.text("SELECT count(*) FROM run")).scalar() == 0
        assert s.execute(sa.text("SELECT count(*) FROM edge")).scalar() == 0


def test_crash_before_commit_leaves_no_run(cat):
    with pytest.raises(KeyboardInterrupt), cat.session() as s, s.begin():
        _run(s, _model(s), _random_matrices(3, [w for _, w in WIDTHS]))
        raise KeyboardInterrupt  # Ctrl-C after the bulk write, before commit
    with cat.session() as s:
        for table in ("model", "neuron", "run", "edge"):
            assert s.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0


def test_allocate_ids_and_insert_columns(cat):
    with cat.session() as s, s.begin():
        ids = bulk.allocate_ids(s, "concept_id_seq", 5)
        assert ids.dtype == np.int64 and len(np.unique(ids)) == 5
        assert list(ids) == sorted(ids)
        with pytest.raises(CatalogError, match="different lengths"):
            bulk.insert_columns(s, "neuron", {"id": [1, 2], "layer_id": [1]})
        with pytest.raises(CatalogError, match="different lengths"):
            bulk.write_edges(s, 1, np.arange(3), np.arange(2), np.ones(3))
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
