"""Bulk I/O of the big tables: neurons, score matrices and edges, never row by row.

A run over layers L_0 … L_T has one score matrix per adjacent pair, `S_i[m, n]` with m the
channel in L_i (source) and n the channel in L_{i+1} (destination). Layers are given as
`neuron_ids`: per layer, the neuron ids indexed by channel. A run is stored as:

- `run_matrix`: each S_i whole, as one losslessly compressed blob (`catalog.matrix_codec`) —
  what circuit search, `refine` and every exact query read (where the bytes sit on each backend:
  `catalog.matrix_store`);
- `edge`: each pair's top edges (`catalog.edge_select.top_edge_mask`), the rows `edges_v` shows;
- `circuit_edge`: each circuit's internal edges, written with the circuit.

Row tables: DuckDB gets an Arrow table registered on the session's own connection and one
`INSERT … SELECT`, inside the caller's transaction; PostgreSQL gets binary `COPY … FROM STDIN`
(`catalog.pg_copy`).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
from sqlalchemy import REAL, BigInteger, Float, Integer, select, text
from sqlalchemy.orm import Session

from catalog import matrix_store, pg_copy
from catalog.edge_select import DEFAULT_TOP_K, circuit_pairs, top_edge_mask
from catalog.engine import driver_connection
from catalog.errors import CatalogError, NotFound
from catalog.matrix_codec import CODEC, decode_matrix, encode_matrix
from catalog.models import Base, Neuron
from catalog.vocab import RunStatus

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


def write_edge_matrices(
    session: Session,
    run_id: int,
    neuron_ids: Sequence[np.ndarray],
    matrices: Sequence[np.ndarray],
    *,
    top_k: int = DEFAULT_TOP_K,
) -> int:
    """Store a run's dense score matrices: every score in `run_matrix`, the top edges in `edge`.

    Args:
        session: the caller's session (its transaction is used; nothing is committed).
        run_id: the run.
        neuron_ids: per run layer, (C_i,) neuron ids indexed by channel.
        matrices: per adjacent pair i, S_i of shape (C_i, C_{i+1}); stored as float32.
        top_k: top edges per source and per destination neuron of each pair written to `edge`
            (see `catalog.edge_select`); the full matrices are kept whatever it is.

    Returns:
        The number of `edge` rows written.

    Raises:
        CatalogError: wrong number or shape of matrices, non-finite scores or a negative top_k.
    """
    check_matrix_shapes(neuron_ids, matrices)
    scores = [np.ascontiguousarray(m, dtype=np.float32) for m in matrices]
    if not all(np.isfinite(m).all() for m in scores):
        raise CatalogError(f"run {run_id}: edge scores must be finite (found NaN or inf)")
    if top_k < 0:
        raise CatalogError(f"top_k must be 0 or more, got {top_k}")
    layer_ids = _layer_ids(session, neuron_ids)
    rows = [
        {
            "run_id": int(run_id),
            "pair": i,
            "src_layer_id": layer_ids[i],
            "dst_layer_id": layer_ids[i + 1],
            "n_src": m.shape[0],
            "n_dst": m.shape[1],
            "codec": CODEC,
            "top_k": int(top_k),
            "scores": encode_matrix(m),
        }
        for i, m in enumerate(scores)
    ]
    matrix_store.write_rows(session, rows)
    chunks = []
    for i, m in enumerate(scores):
        src, dst = np.nonzero(top_edge_mask(m, top_k))  # row-major
        chunks.append(
            (
                np.asarray(neuron_ids[i], dtype=np.int32)[src],
                np.asarray(neuron_ids[i + 1], dtype=np.int32)[dst],
                m[src, dst],
            )
        )
    return _insert_edges(session, "edge", {"run_id": int(run_id)}, chunks)


def write_circuit_edges(
    session: Session,
    circuit_id: int,
    run_id: int,
    neuron_ids: Sequence[np.ndarray],
    matrices: Sequence[np.ndarray],
    channels: Sequence[Sequence[int]],
) -> int:
    """Store a circuit's internal edges (`catalog.edge_select.circuit_pairs`) in `circuit_edge`.

    Args:
        session: the caller's session.
        circuit_id: the circuit.
        run_id: its run.
        neuron_ids: per run layer, (C_i,) neuron ids indexed by channel.
        matrices: the run's score matrices (`read_edge_matrices`).
        channels: per run layer, the circuit's channels.

    Returns:
        The number of rows written.
    """
    src, dst, score = circuit_pairs(neuron_ids, matrices, channels)
    chunk = (src.astype(np.int32), dst.astype(np.int32), score)
    return _insert_edges(session, "circuit_edge", {"circuit_id": int(circuit_id), "run_id": int(run_id)}, [chunk])


def _insert_edges(
    session: Session,
    table: str,
    constants: Mapping[str, int],
    chunks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> int:
    """Insert (src int32, dst int32, score float32) chunks, plus constant id columns, into a table."""
    total = sum(len(score) for _, _, score in chunks)
    if total == 0:
        return 0
    if _backend(session) == "duckdb":
        # One Arrow table (a chunk per pair, no copies) and one INSERT; the ids are constants of
        # the SELECT rather than materialised columns.
        data = pa.table(
            {
                name: pa.chunked_array([pa.array(chunk[j]) for chunk in chunks], type=pa.array(chunks[0][j]).type)
                for j, name in enumerate(EDGE_COLUMNS[1:])
            }
        )
        _duckdb_insert_table(session, table, data, constants=constants)
    else:
        src, dst, score = (np.concatenate([chunk[j] for chunk in chunks]) for j in range(3))
        ids = {name: np.full(total, value, dtype=np.int32) for name, value in constants.items()}
        pg_copy.copy_in(session, table, {**ids, "src_neuron_id": src, "dst_neuron_id": dst, "score": score})
    return total


def _layer_ids(session: Session, neuron_ids: Sequence[np.ndarray]) -> list[int]:
    """The layer id of each run layer, from its first neuron (one query)."""
    firsts = [int(ids[0]) for ids in neuron_ids if len(ids)]
    if len(firsts) != len(neuron_ids):
        raise CatalogError("every run layer needs at least one neuron")
    found = dict(session.execute(select(Neuron.id, Neuron.layer_id).where(Neuron.id.in_(firsts))).tuples().all())
    missing = [n for n in firsts if n not in found]
    if missing:
        raise CatalogError(f"neuron ids {missing} are not in the catalog")
    return [int(found[n]) for n in firsts]


def check_matrix_shapes(neuron_ids: Sequence[np.ndarray], matrices: Sequence[np.ndarray]) -> None:
    """Raise CatalogError unless there is one (C_i, C_{i+1}) matrix per adjacent layer pair."""
    if len(matrices) != len(neuron_ids) - 1:
        raise CatalogError(f"{len(neuron_ids)} layers need {len(neuron_ids) - 1} score matrices, got {len(matrices)}")
    for i, scores in enumerate(matrices):
        want = (len(neuron_ids[i]), len(neuron_ids[i + 1]))
        if tuple(np.shape(scores)) != want:
            raise CatalogError(f"score matrix {i} has shape {tuple(np.shape(scores))}, layers need {want}")


def read_edge_matrices(session: Session, run_id: int, neuron_ids: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Read one run's full score matrices (decoded from `run_matrix`, bit-exact).

    Args:
        session: the caller's session.
        run_id: the run (any status: the caller has checked it).
        neuron_ids: per run layer, (C_i,) neuron ids indexed by channel (checks the shapes).

    Returns:
        Per adjacent pair i, S_i as a fresh, writable (C_i, C_{i+1}) float32 array.

    Raises:
        CatalogError: the run has no stored matrices, or they do not fit its layers.
    """
    stored = [r[1:6] for r in matrix_store.read_rows(session, run_id) if r[1] is not None]
    return _decode_rows(run_id, stored, [(len(a), len(b)) for a, b in zip(neuron_ids, neuron_ids[1:])])


def read_run_matrices(session: Session, run_id: int) -> list[np.ndarray]:
    """A complete run's full score matrices, in one query (what `refine` reads).

    Args:
        session: the caller's session.
        run_id: the run.

    Returns:
        Per adjacent pair i, S_i as a fresh, writable (C_i, C_{i+1}) float32 array.

    Raises:
        NotFound: no such run.
        CatalogError: the run is not complete, or its matrices do not fit its layers.
    """
    rows = matrix_store.read_rows(session, run_id)
    if not rows:
        raise NotFound(f'no run {run_id} in the catalog: list them with `circuits sql "select * from run"`')
    status, names = rows[0][0], rows[0][8]
    if status != RunStatus.complete:
        raise CatalogError(f"run {run_id} is {status}: it has no scores")
    n_layers = len(json.loads(names) if isinstance(names, str) else names)
    stored = [r for r in rows if r[1] is not None]
    return _decode_rows(run_id, [r[1:6] for r in stored], [(r[6], r[7]) for r in stored], n_layers - 1)


def _decode_rows(
    run_id: int, rows: Sequence[tuple], want: Sequence[tuple[int, int]], n_pairs: int | None = None
) -> list[np.ndarray]:
    """Check (pair, n_src, n_dst, codec, blob) rows against the expected shapes and decode them."""
    got = [(r[1], r[2]) for r in rows]
    n_pairs = len(want) if n_pairs is None else n_pairs
    if [r[0] for r in rows] != list(range(n_pairs)) or got != list(want):
        raise CatalogError(
            f"run {run_id} has score matrices of shapes {got}, its layers need {list(want)}: "
            "the catalog is damaged or was written by another version (see `circuits db status`)"
        )
    if sum(r[1] * r[2] for r in rows) < _PARALLEL_SCORES:
        return [decode_matrix(r[4], r[3]) for r in rows]
    # zstd and NumPy release the GIL, so the pairs decode in parallel
    return list(_decoder().map(lambda r: decode_matrix(r[4], r[3]), rows))


_PARALLEL_SCORES = 1 << 20  # below this a thread pool costs more than it saves
_POOL: list[ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()


def _decoder() -> ThreadPoolExecutor:
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="catalog-decode"))
        return _POOL[0]


def read_edges_arrow(
    session: Session, run_id: int, layer_names: Sequence[str], neuron_ids: Sequence[np.ndarray]
) -> pa.Table:
    """Read every score of one run as an Arrow table with layer names and channels.

    Args:
        session: the caller's session.
        run_id: the run.
        layer_names: the run's layers in order.
        neuron_ids: per run layer, (C_i,) neuron ids indexed by channel.

    Returns:
        Columns src_neuron_id, dst_neuron_id (int32), src_layer, dst_layer (dictionary-encoded
        strings), src_channel, dst_channel (int32), score (float32); one row per neuron pair,
        pair by pair, row-major.
    """
    matrices = read_edge_matrices(session, run_id, neuron_ids)
    columns: dict[str, list[np.ndarray]] = {
        k: [] for k in ("src_neuron_id", "dst_neuron_id", "src_layer", "src_channel", "dst_layer", "dst_channel")
    }
    for i, m in enumerate(matrices):
        rows, cols = m.shape
        src = np.repeat(np.arange(rows), cols)  # (rows·cols,) row-major: the source varies slowest
        dst = np.tile(np.arange(cols), rows)
        columns["src_neuron_id"].append(np.asarray(neuron_ids[i])[src])
        columns["dst_neuron_id"].append(np.asarray(neuron_ids[i + 1])[dst])
        columns["src_layer"].append(np.full(m.size, i))
        columns["dst_layer"].append(np.full(m.size, i + 1))
        columns["src_channel"].append(src)
        columns["dst_channel"].append(dst)
    out = {k: np.concatenate(v).astype(np.int32) for k, v in columns.items()}
    names = pa.array(list(layer_names), pa.string())
    for end in ("src_layer", "dst_layer"):
        out[end] = pa.DictionaryArray.from_arrays(pa.array(out[end]), names)
    out["score"] = np.concatenate([m.reshape(-1) for m in matrices])
    return pa.table(out)


def delete_edges(session: Session, run_id: int) -> None:
    """Delete one run's matrices, top edges and circuit edges (in the caller's transaction)."""
    for table in ("edge", "circuit_edge"):
        session.execute(text(f"DELETE FROM {table} WHERE run_id = :r"), {"r": int(run_id)})
    matrix_store.delete_rows(session, run_id)


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
    # One chunk: DuckDB scans chunks in parallel into separate, partly filled row groups, which every
    # later checkpoint rewrites and leaves behind as free blocks (measured: the file twice the data).
    raw.register(name, data.combine_chunks())
    try:
        cols = ", ".join([*constants, *data.column_names])
        values = ", ".join([*(str(int(v)) for v in constants.values()), *data.column_names])
        raw.execute(f"INSERT INTO {table} ({cols}) SELECT {values} FROM {name}")
    finally:
        raw.unregister(name)
