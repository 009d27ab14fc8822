"""Bulk I/O of the big tables: neurons and edges, from and to NumPy/Arrow, never row by row.

DuckDB: the arrays become an Arrow table registered on the session's own DuckDB connection and
one `INSERT … SELECT` copies it, inside the caller's transaction; reads come back as Arrow.
PostgreSQL: binary `COPY … FROM STDIN` / `COPY (…) TO STDOUT` through psycopg (`catalog.pg_copy`).

Edge layout: a run over layers L_0 … L_T has one score matrix per adjacent pair,
`S_i[m, n]` with m the channel in L_i (source) and n the channel in L_{i+1} (destination).
Layers are given as `neuron_ids`: per layer, the neuron ids indexed by channel.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
from sqlalchemy import REAL, BigInteger, Float, Integer, text
from sqlalchemy.orm import Session

from catalog.engine import driver_connection
from catalog import pg_copy
from catalog.errors import CatalogError
from catalog.models import Base

EDGE_COLUMNS = ("run_id", "src_neuron_id", "dst_neuron_id", "score")
_temp_names = itertools.count()


def allocate_ids(session: Session, sequence: str, n: int) -> np.ndarray:
    """Draw `n` values from a sequence in one statement.

    Args:
        session: the caller's session (its transaction is used).
        sequence: the sequence name (e.g. "neuron_id_seq").
        n: how many ids.

    Returns:
        (n,) int64 ids, increasing.
    """
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rows = "range(:n)" if _backend(session) == "duckdb" else "generate_series(1, :n)"
    ids = session.execute(text(f"SELECT nextval('{sequence}') FROM {rows}"), {"n": n}).scalars().all()
    return np.sort(np.asarray(ids, dtype=np.int64))


def insert_columns(session: Session, table: str, columns: Mapping[str, np.ndarray]) -> int:
    """Insert equally long NumPy columns into a table of the catalog, in bulk.

    Args:
        session: the caller's session (its transaction is used; nothing is committed).
        table: a table of `catalog.models` whose other columns are nullable.
        columns: column name → (N,) array of numbers (ids, channels, scores).

    Returns:
        N, the number of rows inserted.

    Raises:
        CatalogError: unknown table or column, or columns of different lengths.
    """
    if table not in Base.metadata.tables:
        raise CatalogError(f"no table {table!r} in the catalog")
    sa_table = Base.metadata.tables[table]
    unknown = set(columns) - set(sa_table.columns.keys())
    if unknown:
        raise CatalogError(f"table {table} has no columns {sorted(unknown)}")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise CatalogError(f"columns for {table} have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    if n == 0:
        return 0
    arrays = {}
    for name, values in columns.items():
        dtype = _column_dtype(sa_table.c[name].type)
        values = np.asarray(values)
        if dtype == np.int32 and len(values) and np.abs(values).max() >= 2**31:
            raise CatalogError(f"{table}.{name} holds values beyond the 32-bit INTEGER column")
        arrays[name] = values.astype(dtype, copy=False)
    if _backend(session) == "duckdb":
        _duckdb_insert(session, table, arrays)
    else:
        pg_copy.copy_in(session, table, arrays)
    return n


def write_edges(
    session: Session,
    run_id: int,
    src_neuron_ids: np.ndarray,
    dst_neuron_ids: np.ndarray,
    scores: np.ndarray,
) -> int:
    """Write edges given as parallel arrays (any subset of a run's neuron pairs).

    Args:
        session: the caller's session.
        run_id: the run the edges belong to.
        src_neuron_ids: (E,) source neuron ids.
        dst_neuron_ids: (E,) destination neuron ids.
        scores: (E,) finite scores, stored as float32.

    Returns:
        E.

    Raises:
        CatalogError: lengths differ or a score is not finite.
    """
    chunk = (
        np.asarray(src_neuron_ids, dtype=np.int32),
        np.asarray(dst_neuron_ids, dtype=np.int32),
        np.asarray(scores, dtype=np.float32),
    )
    if not len(chunk[0]) == len(chunk[1]) == len(chunk[2]):
        raise CatalogError(f"run {run_id}: edge arrays have different lengths {[len(a) for a in chunk]}")
    return _insert_edges(session, run_id, [chunk])


def write_edge_matrices(
    session: Session, run_id: int, neuron_ids: Sequence[np.ndarray], matrices: Sequence[np.ndarray]
) -> int:
    """Write every entry of a run's dense score matrices as edges, in one bulk statement.

    Args:
        session: the caller's session.
        run_id: the run.
        neuron_ids: per run layer, (C_i,) neuron ids indexed by channel.
        matrices: per adjacent pair i, S_i of shape (C_i, C_{i+1}).

    Returns:
        The number of edges written (Σ C_i·C_{i+1}).

    Raises:
        CatalogError: wrong number or shape of matrices, or non-finite scores.
    """
    check_matrix_shapes(neuron_ids, matrices)
    chunks = []
    for i, scores in enumerate(matrices):
        src = np.asarray(neuron_ids[i], dtype=np.int32)
        dst = np.asarray(neuron_ids[i + 1], dtype=np.int32)
        m, n = len(src), len(dst)
        chunks.append((
            np.repeat(src, n),  # (m·n,) row-major: the source channel varies slowest
            np.tile(dst, m),
            np.ascontiguousarray(scores, dtype=np.float32).reshape(m * n),
        ))  # fmt: skip
    return _insert_edges(session, run_id, chunks)


def _insert_edges(
    session: Session, run_id: int, chunks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> int:
    """Insert (src int32, dst int32, score float32) chunks of one run after checking the scores."""
    if not all(np.isfinite(score).all() for _, _, score in chunks):
        raise CatalogError(f"run {run_id}: edge scores must be finite (found NaN or inf)")
    total = sum(len(score) for _, _, score in chunks)
    if total == 0:
        return 0
    if _backend(session) == "duckdb":
        # One Arrow table (a chunk per layer pair, no copies) and one INSERT; the run id is a
        # constant of the SELECT rather than a materialised column.
        table = pa.table({
            name: pa.chunked_array([pa.array(chunk[j]) for chunk in chunks])
            for j, name in enumerate(EDGE_COLUMNS[1:])
        })  # fmt: skip
        _duckdb_insert_table(session, "edge", table, constants={"run_id": int(run_id)})
    else:
        for src, dst, score in chunks:
            run = np.full(len(score), run_id, dtype=np.int32)
            pg_copy.copy_in(session, "edge", dict(zip(EDGE_COLUMNS, (run, src, dst, score))))
    return total


def check_matrix_shapes(neuron_ids: Sequence[np.ndarray], matrices: Sequence[np.ndarray]) -> None:
    """Raise CatalogError unless there is one (C_i, C_{i+1}) matrix per adjacent layer pair."""
    if len(matrices) != len(neuron_ids) - 1:
        raise CatalogError(
            f"{len(neuron_ids)} layers need {len(neuron_ids) - 1} score matrices, got {len(matrices)}"
        )
    for i, scores in enumerate(matrices):
        want = (len(neuron_ids[i]), len(neuron_ids[i + 1]))
        if tuple(np.shape(scores)) != want:
            raise CatalogError(f"score matrix {i} has shape {tuple(np.shape(scores))}, layers need {want}")


def read_edge_arrays(session: Session, run_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one run's edges as parallel arrays (order unspecified).

    Returns:
        (src_neuron_ids, dst_neuron_ids, scores): (E,) int32, int32, float32.
    """
    query = f"SELECT src_neuron_id, dst_neuron_id, score FROM edge WHERE run_id = {int(run_id)}"
    if _backend(session) == "duckdb":
        table = driver_connection(session).sql(query).to_arrow_table()
        src, dst, score = (table.column(i).to_numpy() for i in range(3))
    else:
        src, dst, score = pg_copy.copy_out(session, query, (">i4", ">i4", ">f4"))
    return (
        src.astype(np.int32, copy=False),
        dst.astype(np.int32, copy=False),
        score.astype(np.float32, copy=False),
    )


def read_edge_matrices(session: Session, run_id: int, neuron_ids: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Read one run's edges back into dense per-pair matrices (missing edges are 0).

    Args:
        session: the caller's session.
        run_id: the run.
        neuron_ids: per run layer, (C_i,) neuron ids indexed by channel.

    Returns:
        Per adjacent pair i, S_i as a (C_i, C_{i+1}) float32 array.

    Raises:
        CatalogError: an edge joins neurons that are not adjacent layers of the run.
    """
    src, dst, score = read_edge_arrays(session, run_id)
    widths = np.array([len(ids) for ids in neuron_ids], dtype=np.int64)
    sizes = widths[:-1] * widths[1:]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    if _in_matrix_order(src, dst, neuron_ids, offsets):
        # Fast path, verified above: the rows came back exactly as `write_edge_matrices` wrote
        # them, so the scores are the matrices back to back (copied: Arrow memory is read-only).
        flat = score.copy()
        return [
            flat[offsets[i] : offsets[i + 1]].reshape(widths[i], widths[i + 1]) for i in range(len(sizes))
        ]
    layer_of, channel_of, base = _neuron_lookup(neuron_ids)
    src_layer = _lookup(layer_of, src, base, run_id)
    dst_layer = _lookup(layer_of, dst, base, run_id)
    if not np.array_equal(dst_layer, src_layer + 1):
        raise CatalogError(f"run {run_id} has edges between layers that are not adjacent in the run")
    # One scatter into a flat buffer holding every matrix back to back.
    flat = np.zeros(int(offsets[-1]), dtype=np.float32)
    pos = offsets[src_layer] + channel_of[src - base] * widths[dst_layer] + channel_of[dst - base]
    flat[pos] = score
    return [flat[offsets[i] : offsets[i + 1]].reshape(widths[i], widths[i + 1]) for i in range(len(sizes))]


def read_edges_arrow(
    session: Session, run_id: int, layer_names: Sequence[str], neuron_ids: Sequence[np.ndarray]
) -> pa.Table:
    """Read one run's edges as an Arrow table with layer names and channels (order unspecified).

    Args:
        session: the caller's session.
        run_id: the run.
        layer_names: the run's layers in order.
        neuron_ids: per run layer, (C_i,) neuron ids indexed by channel.

    Returns:
        Columns src_neuron_id, dst_neuron_id (int32), src_layer, dst_layer (dictionary-encoded
        strings), src_channel, dst_channel (int32), score (float32); one row per edge.
    """
    src, dst, score = read_edge_arrays(session, run_id)
    layer_of, channel_of, base = _neuron_lookup(neuron_ids)
    names = pa.array(list(layer_names), pa.string())
    src_layer = _lookup(layer_of, src, base, run_id).astype(np.int32)
    dst_layer = _lookup(layer_of, dst, base, run_id).astype(np.int32)
    return pa.table(
        {
            "src_neuron_id": src,
            "dst_neuron_id": dst,
            "src_layer": pa.DictionaryArray.from_arrays(pa.array(src_layer), names),
            "src_channel": channel_of[src - base].astype(np.int32),
            "dst_layer": pa.DictionaryArray.from_arrays(pa.array(dst_layer), names),
            "dst_channel": channel_of[dst - base].astype(np.int32),
            "score": score,
        }
    )


def delete_edges(session: Session, run_id: int) -> None:
    """Delete one run's edges (in the caller's transaction)."""
    session.execute(text("DELETE FROM edge WHERE run_id = :r"), {"r": run_id})


def _in_matrix_order(
    src: np.ndarray, dst: np.ndarray, neuron_ids: Sequence[np.ndarray], offsets: np.ndarray
) -> bool:
    """Whether every (src, dst) row is where the row-major dense layout puts it."""
    if len(src) != offsets[-1]:
        return False
    for i in range(len(neuron_ids) - 1):
        rows, cols = np.asarray(neuron_ids[i]), np.asarray(neuron_ids[i + 1])
        block = slice(int(offsets[i]), int(offsets[i + 1]))
        shape = (len(rows), len(cols))
        if not (src[block].reshape(shape) == rows[:, None]).all():
            return False
        if not (dst[block].reshape(shape) == cols[None, :]).all():
            return False
    return True


def _neuron_lookup(neuron_ids: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """Dense id → (run layer index, channel) tables over the ids' range; -1 marks other ids."""
    all_ids = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in neuron_ids])
    base = int(all_ids.min()) if len(all_ids) else 0
    span = int(all_ids.max()) - base + 1 if len(all_ids) else 0
    layer_of = np.full(span, -1, dtype=np.int64)
    channel_of = np.full(span, -1, dtype=np.int64)
    for i, ids in enumerate(neuron_ids):
        ids = np.asarray(ids, dtype=np.int64)
        layer_of[ids - base] = i
        channel_of[ids - base] = np.arange(len(ids))
    return layer_of, channel_of, base


def _lookup(layer_of: np.ndarray, ids: np.ndarray, base: int, run_id: int) -> np.ndarray:
    index = ids.astype(np.int64) - base
    if len(index) and (index.min() < 0 or index.max() >= len(layer_of) or (layer_of[index] < 0).any()):
        raise CatalogError(f"run {run_id} has edges on neurons outside the run's layers")
    return layer_of[index]


def _backend(session: Session) -> str:
    return session.get_bind().dialect.name


def _column_dtype(sa_type: object) -> np.dtype:
    if isinstance(sa_type, BigInteger):
        return np.dtype(np.int64)
    if isinstance(sa_type, Integer):
        return np.dtype(np.int32)
    if isinstance(sa_type, REAL):  # checked before Float: REAL is a Float
        return np.dtype(np.float32)
    if isinstance(sa_type, Float):
        return np.dtype(np.float64)
    raise CatalogError(f"bulk insert handles numeric columns only, not {sa_type}")


def _duckdb_insert(session: Session, table: str, arrays: Mapping[str, np.ndarray]) -> None:
    _duckdb_insert_table(session, table, pa.table({k: pa.array(v) for k, v in arrays.items()}))


def _duckdb_insert_table(
    session: Session, table: str, data: pa.Table, constants: Mapping[str, int] | None = None
) -> None:
    """INSERT … SELECT from an Arrow table registered on the session's DuckDB connection."""
    raw = driver_connection(session)
    name = f"_bulk_{table}_{next(_temp_names)}"
    constants = dict(constants or {})
    raw.register(name, data)
    try:
        cols = ", ".join([*constants, *data.column_names])
        values = ", ".join([*(str(int(v)) for v in constants.values()), *data.column_names])
        raw.execute(f"INSERT INTO {table} ({cols}) SELECT {values} FROM {name}")
    finally:
        raw.unregister(name)
