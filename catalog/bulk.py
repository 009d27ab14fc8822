"""Bulk I/O of the big tables: neurons and edges, from and to NumPy/Arrow, never row by row.

DuckDB: the arrays become an Arrow table registered on the session's own DuckDB connection and
one `INSERT … SELECT` copies it, inside the caller's transaction; reads come back as Arrow.
PostgreSQL: binary `COPY … FROM STDIN` / `COPY (…) TO STDOUT` through psycopg, encoded and decoded
with NumPy structured arrays.

Edge layout: a run over layers L_0 … L_T has one score matrix per adjacent pair,
`S_i[m, n]` with m the channel in L_i (source) and n the channel in L_{i+1} (destination).
Layers are given as `neuron_ids`: per layer, the neuron ids indexed by channel.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
from sqlalchemy import REAL, BigInteger, Float, Integer, text
from sqlalchemy.orm import Session

from catalog.engine import driver_connection
from catalog.errors import CatalogError
from catalog.models import Base

EDGE_COLUMNS = ("run_id", "src_neuron_id", "dst_neuron_id", "score")
_PG_CHUNK_ROWS = 1 << 20  # rows per COPY write: bounds the encoded buffer (~34 MB for edges)
_PG_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_PG_HEADER = _PG_SIGNATURE + np.array([0, 0], dtype=">i4").tobytes()  # flags, extension length
_PG_TRAILER = np.array([-1], dtype=">i2").tobytes()
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
    arrays = {name: np.asarray(v, dtype=_column_dtype(sa_table.c[name].type)) for name, v in columns.items()}
    if _backend(session) == "duckdb":
        _duckdb_insert(session, table, arrays)
    else:
        _pg_copy_in(session, table, arrays)
    return n


def write_edges(
    session: Session, run_id: int, src_neuron_ids: np.ndarray, dst_neuron_ids: np.ndarray, scores: np.ndarray
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
    scores = np.asarray(scores, dtype=np.float32)
    if not np.isfinite(scores).all():
        raise CatalogError(f"run {run_id}: edge scores must be finite (found NaN or inf)")
    run = np.full(len(scores), run_id, dtype=np.int32)
    return insert_columns(
        session,
        "edge",
        {"run_id": run, "src_neuron_id": src_neuron_ids, "dst_neuron_id": dst_neuron_ids, "score": scores},
    )


def write_edge_matrices(
    session: Session, run_id: int, neuron_ids: Sequence[np.ndarray], matrices: Sequence[np.ndarray]
) -> int:
    """Write every entry of a run's dense score matrices as edges.

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
    total = 0
    for i, scores in enumerate(matrices):
        src, dst = np.asarray(neuron_ids[i]), np.asarray(neuron_ids[i + 1])
        m, n = len(src), len(dst)
        total += write_edges(
            session,
            run_id,
            np.repeat(src, n),  # (m·n,) row-major: source channel varies slowest
            np.tile(dst, m),
            np.asarray(scores, dtype=np.float32).reshape(m * n),
        )
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
        src, dst, score = _pg_copy_out(session, query, (">i4", ">i4", ">f4"))
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
    layer_of, channel_of, base = _neuron_lookup(neuron_ids)
    widths = np.array([len(ids) for ids in neuron_ids], dtype=np.int64)
    sizes = widths[:-1] * widths[1:]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
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
    raw = driver_connection(session)
    name = f"_bulk_{table}_{next(_temp_names)}"
    raw.register(name, pa.table({k: pa.array(v) for k, v in arrays.items()}))
    try:
        cols = ", ".join(arrays)
        raw.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {name}")
    finally:
        raw.unregister(name)


def pg_binary_chunks(arrays: Sequence[np.ndarray], chunk_rows: int = _PG_CHUNK_ROWS) -> Iterator[bytes]:
    """Encode fixed-width columns in PostgreSQL's binary COPY format.

    Args:
        arrays: equally long (N,) arrays of int32/int64/float32/float64, in table column order.
        chunk_rows: rows per yielded chunk after the header.

    Yields:
        The header, then the rows chunk by chunk, then the trailer.
    """
    dtype = _pg_row_dtype([a.dtype.newbyteorder(">").str for a in arrays])
    yield _PG_HEADER
    n = len(arrays[0]) if arrays else 0
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        rows = np.empty(stop - start, dtype=dtype)
        rows["n"] = len(arrays)
        for i, a in enumerate(arrays):
            rows[f"len{i}"] = a.dtype.itemsize
            rows[f"v{i}"] = a[start:stop]
        yield rows.tobytes()
    yield _PG_TRAILER


def pg_binary_decode(data: bytes, dtypes: Sequence[str]) -> list[np.ndarray]:
    """Decode PostgreSQL binary COPY output of fixed-width, non-null columns.

    Args:
        data: the whole COPY … TO STDOUT (FORMAT BINARY) stream.
        dtypes: the big-endian NumPy dtype of each column, e.g. (">i4", ">f4").

    Returns:
        One native-endian (N,) array per column.

    Raises:
        CatalogError: the stream is not in that format (or holds NULLs).
    """
    if not data.startswith(_PG_SIGNATURE) or not data.endswith(_PG_TRAILER):
        raise CatalogError("not a PostgreSQL binary COPY stream")
    ext = int(np.frombuffer(data, dtype=">i4", count=1, offset=15)[0])
    start, stop = 19 + ext, len(data) - len(_PG_TRAILER)
    dtype = _pg_row_dtype(dtypes)
    if (stop - start) % dtype.itemsize:
        raise CatalogError("PostgreSQL COPY rows are not the expected fixed-width columns")
    rows = np.frombuffer(data, dtype=dtype, offset=start, count=(stop - start) // dtype.itemsize)
    widths = [np.dtype(d).itemsize for d in dtypes]
    if (rows["n"] != len(dtypes)).any() or any((rows[f"len{i}"] != w).any() for i, w in enumerate(widths)):
        raise CatalogError("PostgreSQL COPY rows are not the expected fixed-width, non-null columns")
    return [rows[f"v{i}"].astype(np.dtype(d).newbyteorder("=")) for i, d in enumerate(dtypes)]


def _pg_row_dtype(dtypes: Sequence[str]) -> np.dtype:
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for i, d in enumerate(dtypes):
        fields += [(f"len{i}", ">i4"), (f"v{i}", d)]
    return np.dtype(fields)


def _pg_copy_in(session: Session, table: str, arrays: Mapping[str, np.ndarray]) -> None:
    raw = driver_connection(session)
    cols = ", ".join(arrays)
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
        for chunk in pg_binary_chunks(list(arrays.values())):
            copy.write(chunk)


def _pg_copy_out(session: Session, query: str, dtypes: Sequence[str]) -> list[np.ndarray]:
    raw = driver_connection(session)
    with raw.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    return pg_binary_decode(data, dtypes)
