"""Where a run's encoded score matrices live: one BYTEA per pair on PostgreSQL, 8-byte words on DuckDB.

PostgreSQL stores each pair's blob in `run_matrix.scores` (TOAST keeps large values out of line).
DuckDB does not: measured with duckdb 2.0, appending multi-megabyte BLOBs run after run made every
checkpoint slower (0.6 s → 1.5 s over 12 googlenet runs, growing with the table) and left as many
free blocks behind as data written (the file twice the data). So on DuckDB the blob's bytes are
rows of `run_matrix_word` (run_id, pair, seq, word BIGINT: little-endian 8-byte words, the last
zero-padded): plain numeric appends that fill row groups and are never rewritten, at ~8 bytes a
word (the id columns compress to almost nothing). `run_matrix.n_bytes` gives the blob's length.

Both paths are internal to `catalog.bulk`; callers see blobs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import insert
from sqlalchemy.orm import Session

from catalog.engine import driver_connection
from catalog.errors import CatalogError
from catalog.models import RunMatrix

__all__ = ["read_rows", "write_rows"]

_temp_names = itertools.count()

# A run's status, its matrices with the widths of the layers each joins, and its layer names.
_RUN_MATRICES = (
    "SELECT r.status, rm.pair, rm.n_src, rm.n_dst, rm.codec, rm.scores, ls.width, ld.width, "
    "r.layer_names, rm.n_bytes "
    "FROM run r LEFT JOIN run_matrix rm ON rm.run_id = r.id "
    "LEFT JOIN layer ls ON ls.id = rm.src_layer_id LEFT JOIN layer ld ON ld.id = rm.dst_layer_id "
    "WHERE r.id = ? ORDER BY rm.pair"
)


def write_rows(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `run_matrix` rows whose `scores` are blobs (words instead on DuckDB)."""
    if not rows:
        return
    rows = [{**r, "n_bytes": len(r["scores"])} for r in rows]
    if session.get_bind().dialect.name != "duckdb":
        session.execute(insert(RunMatrix.__table__), rows)
        return
    session.execute(insert(RunMatrix.__table__), [{**r, "scores": None} for r in rows])
    parts = []
    for r in rows:
        words = blob_words(r["scores"])
        parts.append(pa.table({
            "run_id": np.full(len(words), r["run_id"], np.int32),
            "pair": np.full(len(words), r["pair"], np.int32),
            "seq": np.arange(len(words), dtype=np.int32),
            "word": words,
        }))  # fmt: skip
    raw = driver_connection(session)
    name = f"_bulk_words_{next(_temp_names)}"
    raw.register(name, pa.concat_tables(parts).combine_chunks())  # one chunk: see catalog.bulk
    try:
        raw.execute(f"INSERT INTO run_matrix_word (run_id, pair, seq, word) SELECT run_id, pair, seq, word FROM {name}")
    finally:
        raw.unregister(name)


def read_rows(session: Session, run_id: int) -> list[tuple]:
    """A run's (status, pair, n_src, n_dst, codec, blob, src width, dst width, layer names) rows.

    One row with NULL pair columns when the run has no matrices; none when there is no such run.
    """
    raw = driver_connection(session)
    if session.get_bind().dialect.name != "duckdb":
        with raw.cursor(binary=True) as cur:  # bytea comes in binary, not as hex text
            return [r[:-1] for r in cur.execute(_RUN_MATRICES.replace("?", "%s"), [int(run_id)]).fetchall()]
    rows = raw.execute(_RUN_MATRICES, [int(run_id)]).fetchall()
    if not rows or rows[0][1] is None:
        return [r[:-1] for r in rows]
    table = raw.sql(f"SELECT pair, seq, word FROM run_matrix_word WHERE run_id = {int(run_id)}").to_arrow_table()
    pair, seq, word = (table.column(i).to_numpy() for i in range(3))
    step_pair, step_seq = np.diff(pair), np.diff(seq)
    if not ((step_pair > 0) | ((step_pair == 0) & (step_seq == 1))).all():  # written in order: rarely
        order = np.lexsort((seq, pair))
        pair, seq, word = pair[order], seq[order], word[order]
    starts = np.searchsorted(pair, [r[1] for r in rows] + [np.iinfo(np.int32).max])
    out = []
    for r, a, b in zip(rows, starts[:-1], starts[1:]):
        if not np.array_equal(seq[a:b], np.arange(b - a)):
            raise CatalogError(f"run {run_id}: the stored words of pair {r[1]} are incomplete")
        blob = word[a:b].astype("<i8", copy=False).tobytes()[: r[-1]]
        out.append((*r[:5], blob, *r[6:-1]))
    return out


def blob_words(blob: bytes) -> np.ndarray:
    """A blob as little-endian int64 words, the last zero-padded."""
    padded = blob + b"\0" * (-len(blob) % 8)
    return np.frombuffer(padded, dtype="<i8").astype(np.int64, copy=False)


def delete_rows(session: Session, run_id: int) -> None:
    """Delete a run's matrices (both tables)."""
    from sqlalchemy import text

    for table in ("run_matrix_word", "run_matrix"):
        session.execute(text(f"DELETE FROM {table} WHERE run_id = :r"), {"r": int(run_id)})
