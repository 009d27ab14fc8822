"""Where a run's encoded score matrices live: one BYTEA per pair on PostgreSQL, 8-byte words on DuckDB.

PostgreSQL stores each pair's blob in `run_matrix.scores` (TOAST keeps large values out of line).
DuckDB does not: measured with duckdb 2.0, appending multi-megabyte BLOBs run after run made every
checkpoint slower (0.6 s → 1.5 s over 12 googlenet runs, growing with the table) and left as many
free blocks behind as data written (the file twice the data). So on DuckDB the blob's bytes are
rows of `run_matrix_word` (run_id, seq, word BIGINT): the run's blobs in pair order, each as
little-endian 8-byte words with the last one zero-padded, `seq` numbering the run's words from 0.
Plain numeric appends fill row groups that are never rewritten, at ~8 bytes a word (the id columns
compress to almost nothing); `run_matrix.n_bytes` gives each blob's length, hence its words.

Both paths are internal to `catalog.bulk`; callers see blobs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pyarrow as pa
from sqlalchemy import Table, insert
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
    """Insert one run's `run_matrix` rows, in pair order, whose `scores` are blobs (words on DuckDB)."""
    if not rows:
        return
    rows = [{**r, "n_bytes": len(r["scores"])} for r in rows]
    table = cast(Table, RunMatrix.__table__)  # a declarative class's __table__ is a Table (typed FromClause)
    if session.get_bind().dialect.name != "duckdb":
        session.execute(insert(table), rows)
        return
    session.execute(insert(table), [{**r, "scores": None} for r in rows])
    words = np.concatenate([blob_words(r["scores"]) for r in rows])  # (W,) the run's blobs in pair order
    table = pa.table(
        {
            "run_id": np.full(len(words), rows[0]["run_id"], np.int32),
            "seq": np.arange(len(words), dtype=np.int32),
            "word": words,
        }
    )
    raw = driver_connection(session)
    name = f"_bulk_words_{next(_temp_names)}"
    raw.register(name, table)  # one Arrow chunk (see catalog.bulk._duckdb_insert_table)
    try:
        raw.execute(f"INSERT INTO run_matrix_word (run_id, seq, word) SELECT run_id, seq, word FROM {name}")
    finally:
        raw.unregister(name)


def read_rows(session: Session, run_id: int) -> list[tuple]:
    """A run's (status, pair, n_src, n_dst, codec, blob, src width, dst width, layer names) rows.

    A blob is bytes (PostgreSQL) or a memoryview into one buffer of the run's words (DuckDB).

    One row with NULL pair columns when the run has no matrices; none when there is no such run.
    """
    raw = driver_connection(session)
    if session.get_bind().dialect.name != "duckdb":
        with raw.cursor(binary=True) as cur:  # bytea comes in binary, not as hex text
            return [r[:-1] for r in cur.execute(_RUN_MATRICES.replace("?", "%s"), [int(run_id)]).fetchall()]
    rows = raw.execute(_RUN_MATRICES, [int(run_id)]).fetchall()
    if not rows or rows[0][1] is None:
        return [r[:-1] for r in rows]
    table = raw.sql(f"SELECT seq, word FROM run_matrix_word WHERE run_id = {int(run_id)}").to_arrow_table()
    seq, word = (table.column(i).to_numpy() for i in range(2))
    counts = [(r[-1] + 7) // 8 for r in rows]  # words per pair
    if not _is_range(seq, sum(counts)):  # written in order, so read in order: rarely
        order = np.argsort(seq, kind="stable")
        seq, word = seq[order], word[order]
        if not _is_range(seq, sum(counts)):
            raise CatalogError(f"run {run_id}: its stored matrix words are incomplete")
    # (8·W,) the blobs back to back, padded; slices of a memoryview are views, not copies
    data = np.ascontiguousarray(word, dtype="<i8").view(np.uint8).data
    out, at = [], 0
    for r, count in zip(rows, counts):
        out.append((*r[:5], data[at : at + r[-1]], *r[6:-1]))
        at += 8 * count
    return out


def _is_range(seq: np.ndarray, n: int) -> bool:
    """`seq` is 0, 1, …, n - 1 (one comparison pass, no `arange` of n)."""
    return len(seq) == n and (n == 0 or (seq[0] == 0 and bool(np.all(np.diff(seq) == 1))))


def blob_words(blob: bytes) -> np.ndarray:
    """A blob as little-endian int64 words, the last zero-padded."""
    padded = blob + b"\0" * (-len(blob) % 8)
    return np.frombuffer(padded, dtype="<i8").astype(np.int64, copy=False)


def delete_rows(session: Session, run_id: int) -> None:
    """Delete a run's matrices (both tables)."""
    from sqlalchemy import text

    for table in ("run_matrix_word", "run_matrix"):
        session.execute(text(f"DELETE FROM {table} WHERE run_id = :r"), {"r": int(run_id)})
