"""Edge storage that scales: full matrices as compressed blobs, top edges and circuit edges as rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

Before: `edge` held every neuron pair of every run (~19 MB of DuckDB file per googlenet run).
After:
- `run_matrix`: per run and adjacent layer pair, the whole score matrix as one lossless blob
  (codec `f32-nz-shuffle-zstd`, `catalog.matrix_codec`), in `scores` on PostgreSQL and as
  8-byte words in `run_matrix_word` on DuckDB (see `catalog.matrix_store`);
- `edge`: only each pair's top edges (every source's and destination's 4 strongest,
  `catalog.edge_select`), so `edges_v` keeps its name and columns but shows the top edges;
- `circuit_edge`: every circuit's internal edges with their scores; new view `circuit_edges_v`.

Data conversion, one run at a time (memory ~ one run): the old rows are scattered into dense
matrices (a missing pair reads 0, as the old reader did), encoded, and the circuits' internal
edges and the top edges are taken from them. The old table is renamed `edge_0001` while the new
`edge` fills, then dropped. Only the pure functions of `catalog.matrix_codec` and
`catalog.edge_select` are imported (their outputs are fixed by the stored codec name and K);
every statement is written out here, so later changes to `catalog.bulk` do not change this
revision. Offline (`--sql`) mode emits the DDL only: the rows need an online upgrade.
Downgrade writes every score back as rows and drops the new tables.
DuckDB reuses the freed space for later writes; the file itself shrinks only when copied
(e.g. `EXPORT DATABASE` / `IMPORT DATABASE`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from alembic import context, op

from catalog import pg_copy
from catalog.edge_select import circuit_pairs, top_edge_mask
from catalog.matrix_codec import CODEC, decode_matrix, encode_matrix

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TOP_K = 4  # catalog.edge_select.DEFAULT_TOP_K when this revision was written (frozen here)

EDGES_V = """
SELECT e.run_id AS run_id,
       ls.name AS src_layer, ls.position AS src_position, ns.channel AS src_channel,
       ld.name AS dst_layer, nd.channel AS dst_channel, e.score AS score
FROM edge e
JOIN run r ON r.id = e.run_id AND r.status = 'complete'
JOIN neuron ns ON ns.id = e.src_neuron_id
JOIN layer ls ON ls.id = ns.layer_id
JOIN neuron nd ON nd.id = e.dst_neuron_id
JOIN layer ld ON ld.id = nd.layer_id
"""

CIRCUIT_EDGES_V = """
SELECT ce.circuit_id AS circuit_id, ce.run_id AS run_id, m.name AS model, co.name AS concept,
       ls.name AS src_layer, ls.position AS src_position, ns.channel AS src_channel,
       ld.name AS dst_layer, nd.channel AS dst_channel, ce.score AS score
FROM circuit_edge ce
JOIN run r ON r.id = ce.run_id AND r.status = 'complete'
JOIN model m ON m.id = r.model_id
JOIN concept co ON co.id = r.concept_id
JOIN neuron ns ON ns.id = ce.src_neuron_id
JOIN layer ls ON ls.id = ns.layer_id
JOIN neuron nd ON nd.id = ce.dst_neuron_id
JOIN layer ld ON ld.id = nd.layer_id
"""

EDGE_ROW = ("src_neuron_id", "dst_neuron_id", "score")
# run_matrix's columns in order: pair i joins layer_names[i] (src) and [i + 1] (dst); `scores` is
# the blob on PostgreSQL and NULL on DuckDB, whose blobs are words in run_matrix_word.
RUN_MATRIX_ROW = (
    "run_id",
    "pair",
    "src_layer_id",
    "dst_layer_id",
    "n_src",
    "n_dst",
    "codec",
    "top_k",
    "n_bytes",
    "scores",
)


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _create_edge_table(name: str, index: str) -> None:
    """The edge table as revision 0001 made it (no keys; a run_id index on PostgreSQL)."""
    op.create_table(
        name,
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("src_neuron_id", sa.Integer, nullable=False),
        sa.Column("dst_neuron_id", sa.Integer, nullable=False),
        sa.Column("score", sa.REAL, nullable=False),
    )
    if _postgres():
        op.create_index(index, name, ["run_id"])


def _swap_out_edge_table(old_name: str) -> None:
    """Rename `edge` (and its PostgreSQL index) to `old_name` and create an empty `edge`."""
    op.execute("DROP VIEW edges_v")
    op.rename_table("edge", old_name)
    if _postgres():
        op.execute(f"ALTER INDEX ix_edge_run_id RENAME TO ix_{old_name}_run_id")
    _create_edge_table("edge", "ix_edge_run_id")


def upgrade() -> None:
    op.create_table(
        "run_matrix",
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("pair", sa.Integer, nullable=False),
        sa.Column("src_layer_id", sa.Integer, nullable=False),
        sa.Column("dst_layer_id", sa.Integer, nullable=False),
        sa.Column("n_src", sa.Integer, nullable=False),
        sa.Column("n_dst", sa.Integer, nullable=False),
        sa.Column("codec", sa.String(40), nullable=False),
        sa.Column("top_k", sa.Integer, nullable=False),
        sa.Column("n_bytes", sa.Integer, nullable=False),
        sa.Column("scores", sa.LargeBinary, nullable=True),
        sa.PrimaryKeyConstraint("run_id", "pair", name="pk_run_matrix"),
        sa.ForeignKeyConstraint(["src_layer_id"], ["layer.id"], name="fk_run_matrix_src_layer_id_layer"),
        sa.ForeignKeyConstraint(["dst_layer_id"], ["layer.id"], name="fk_run_matrix_dst_layer_id_layer"),
    )
    if _postgres():  # the blobs are compressed already: keep TOAST from trying again
        op.execute("ALTER TABLE run_matrix ALTER COLUMN scores SET STORAGE EXTERNAL")
    op.create_table(  # DuckDB keeps the blobs here (catalog.matrix_store says why)
        "run_matrix_word",
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("word", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "circuit_edge",
        sa.Column("circuit_id", sa.Integer, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("src_neuron_id", sa.Integer, nullable=False),
        sa.Column("dst_neuron_id", sa.Integer, nullable=False),
        sa.Column("score", sa.REAL, nullable=False),
    )
    if _postgres():
        op.create_index("ix_circuit_edge_circuit_id", "circuit_edge", ["circuit_id"])
    _swap_out_edge_table("edge_0001")
    if context.is_offline_mode():
        op.execute("-- run `circuits db upgrade` online: offline mode cannot convert the edge rows")
    else:
        _convert_rows(op.get_bind())
    op.drop_table("edge_0001")
    op.execute(f"CREATE VIEW edges_v AS {EDGES_V}")
    op.execute(f"CREATE VIEW circuit_edges_v AS {CIRCUIT_EDGES_V}")


def downgrade() -> None:
    op.execute("DROP VIEW circuit_edges_v")
    _swap_out_edge_table("edge_0004")
    if not context.is_offline_mode():
        bind = op.get_bind()
        for run_id, neuron_ids in _runs(bind):
            matrices = _read_matrices(bind, run_id)
            rows = [_rows(neuron_ids, i, m, np.ones(m.shape, dtype=bool)) for i, m in enumerate(matrices)]
            _insert(bind, "edge", {"run_id": run_id}, rows)
    op.drop_table("edge_0004")
    op.drop_table("circuit_edge")
    op.drop_table("run_matrix_word")
    op.drop_table("run_matrix")
    op.execute(f"CREATE VIEW edges_v AS {EDGES_V}")


def _convert_rows(bind: sa.Connection) -> None:
    """Per complete run: old rows → matrices → blobs, top edges, circuit edges."""
    run_matrix = sa.table("run_matrix", *(sa.column(c) for c in RUN_MATRIX_ROW))
    for run_id, neuron_ids in _runs(bind):
        if len(neuron_ids) < 2:  # no layer pair, no scores (not a run the store would write)
            continue
        matrices = _old_matrices(bind, run_id, neuron_ids)
        layer_ids = _layer_ids(bind, neuron_ids)
        blobs = [encode_matrix(m) for m in matrices]
        rows = [
            (run_id, i, src, dst, *m.shape, CODEC, TOP_K, len(blob), blob if _postgres() else None)
            for i, (m, src, dst, blob) in enumerate(zip(matrices, layer_ids, layer_ids[1:], blobs))
        ]
        bind.execute(sa.insert(run_matrix), [dict(zip(RUN_MATRIX_ROW, row)) for row in rows])
        if not _postgres():  # DuckDB: the run's blobs as little-endian 8-byte words, in pair order
            words = np.concatenate([np.frombuffer(b + b"\0" * (-len(b) % 8), dtype="<i8") for b in blobs])
            _bulk(
                bind,
                "run_matrix_word",
                {
                    "run_id": np.full(len(words), run_id, np.int32),
                    "seq": np.arange(len(words), dtype=np.int32),
                    "word": words.astype(np.int64),
                },
            )
        top = [_rows(neuron_ids, i, m, top_edge_mask(m, TOP_K)) for i, m in enumerate(matrices)]
        _insert(bind, "edge", {"run_id": run_id}, top)
        for circuit_id, channels in _circuits(bind, run_id, neuron_ids):
            src, dst, score = circuit_pairs(neuron_ids, matrices, channels)
            chunk = (src.astype(np.int32), dst.astype(np.int32), score)
            _insert(bind, "circuit_edge", {"circuit_id": circuit_id, "run_id": run_id}, [chunk])


def _runs(bind: sa.Connection) -> Iterator[tuple[int, list[np.ndarray]]]:
    """(run id, per run layer the neuron ids by channel) of every complete run, in id order."""
    runs = bind.execute(
        sa.text("SELECT id, model_id, layer_names FROM run WHERE status = 'complete' ORDER BY id")
    ).all()
    by_model: dict[int, dict[str, np.ndarray]] = {}
    for run_id, model_id, layer_names in runs:
        if model_id not in by_model:
            by_model[model_id] = _model_neurons(bind, model_id)
        names = json.loads(layer_names) if isinstance(layer_names, str) else layer_names
        missing = [n for n in names if n not in by_model[model_id]]
        if missing:
            raise RuntimeError(
                f"run {run_id} names layers {missing} that its model does not have: repair or delete it first"
            )
        yield int(run_id), [by_model[model_id][n] for n in names]


def _model_neurons(bind: sa.Connection, model_id: int) -> dict[str, np.ndarray]:
    rows = bind.execute(
        sa.text(
            "SELECT l.name, n.channel, n.id FROM neuron n JOIN layer l ON l.id = n.layer_id "
            "WHERE l.model_id = :m ORDER BY l.name, n.channel"
        ),
        {"m": model_id},
    ).all()
    out: dict[str, list[int]] = {}
    for name, channel, neuron_id in rows:
        assert channel == len(out.setdefault(name, [])), f"layer {name}: channels are not 0…C-1"
        out[name].append(neuron_id)
    return {name: np.asarray(ids, dtype=np.int64) for name, ids in out.items()}


def _layer_ids(bind: sa.Connection, neuron_ids: list[np.ndarray]) -> list[int]:
    firsts = [int(ids[0]) for ids in neuron_ids]
    rows = bind.execute(
        sa.text("SELECT id, layer_id FROM neuron WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True)),
        {"ids": firsts},
    ).all()
    found = {neuron_id: layer_id for neuron_id, layer_id in rows}
    return [int(found[n]) for n in firsts]


def _old_matrices(bind: sa.Connection, run_id: int, neuron_ids: list[np.ndarray]) -> list[np.ndarray]:
    """The run's rows of `edge_0001` as dense matrices; a pair without a row is 0."""
    query = f"SELECT src_neuron_id, dst_neuron_id, score FROM edge_0001 WHERE run_id = {int(run_id)}"
    raw = bind.connection.driver_connection
    assert raw is not None, "an open connection has a DBAPI connection"
    if _postgres():
        with raw.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
        src, dst, score = pg_copy.decode(data, (">i4", ">i4", ">f4"))
    else:
        table = getattr(raw, "_ConnectionWrapper__c", raw).sql(query).to_arrow_table()
        src, dst, score = (table.column(i).to_numpy() for i in range(3))
    all_ids = np.concatenate(neuron_ids)
    base, span = int(all_ids.min()), int(all_ids.max() - all_ids.min()) + 1
    layer_of = np.full(span, -1, dtype=np.int64)
    channel_of = np.zeros(span, dtype=np.int64)
    for i, ids in enumerate(neuron_ids):
        layer_of[ids - base], channel_of[ids - base] = i, np.arange(len(ids))
    s, d = src.astype(np.int64) - base, dst.astype(np.int64) - base
    inside = (s >= 0) & (s < span) & (d >= 0) & (d < span)
    s_layer = np.where(inside, layer_of[np.clip(s, 0, span - 1)], -1)
    d_layer = np.where(inside, layer_of[np.clip(d, 0, span - 1)], -1)
    if ((s_layer < 0) | (d_layer != s_layer + 1)).any():
        raise RuntimeError(
            f"run {run_id} has edges that do not join adjacent layers of the run: repair or delete it first"
        )
    matrices = [np.zeros((len(a), len(b)), dtype=np.float32) for a, b in zip(neuron_ids, neuron_ids[1:])]
    for i, m in enumerate(matrices):
        sel = s_layer == i
        m[channel_of[s[sel]], channel_of[d[sel]]] = score[sel]
    return matrices


def _circuits(bind: sa.Connection, run_id: int, neuron_ids: list[np.ndarray]) -> Iterator[tuple[int, list[list[int]]]]:
    """(circuit id, per run layer its channels) of every circuit of a run."""
    rows = bind.execute(
        sa.text(
            "SELECT c.id, cn.neuron_id FROM circuit c JOIN circuit_neuron cn ON cn.circuit_id = c.id "
            "WHERE c.run_id = :r ORDER BY c.id"
        ),
        {"r": run_id},
    ).all()
    where = {int(n): (i, c) for i, ids in enumerate(neuron_ids) for c, n in enumerate(ids.tolist())}
    members: dict[int, list[list[int]]] = {}
    for circuit_id, neuron_id in rows:
        layer, channel = where[int(neuron_id)]
        members.setdefault(int(circuit_id), [[] for _ in neuron_ids])[layer].append(channel)
    yield from members.items()


def _read_matrices(bind: sa.Connection, run_id: int) -> list[np.ndarray]:
    rows = bind.execute(
        sa.text("SELECT codec, n_bytes, scores FROM run_matrix WHERE run_id = :r ORDER BY pair"), {"r": run_id}
    ).all()
    if rows and rows[0][2] is None:  # DuckDB: reassemble the run's words
        words = (
            bind.execute(sa.text("SELECT word FROM run_matrix_word WHERE run_id = :r ORDER BY seq"), {"r": run_id})
            .scalars()
            .all()
        )
        data, at, blobs = np.asarray(words, dtype="<i8").tobytes(), 0, []
        for _, n_bytes, _ in rows:
            blobs.append(data[at : at + n_bytes])
            at += 8 * ((n_bytes + 7) // 8)
    else:
        blobs = [bytes(blob) for _, _, blob in rows]
    return [decode_matrix(blob, codec) for (codec, _, _), blob in zip(rows, blobs)]


def _rows(neuron_ids: list[np.ndarray], i: int, matrix: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, ...]:
    """(src ids int32, dst ids int32, scores float32) of the kept entries of pair i, row-major."""
    src, dst = np.nonzero(keep)
    return neuron_ids[i][src].astype(np.int32), neuron_ids[i + 1][dst].astype(np.int32), matrix[src, dst]


def _insert(
    bind: sa.Connection, table: str, constants: Mapping[str, int], chunks: list[tuple[np.ndarray, ...]]
) -> None:
    """Bulk insert (src, dst, score) chunks plus constant id columns."""
    total = sum(len(c[0]) for c in chunks)
    if total == 0:
        return
    columns = {name: np.concatenate([c[j] for c in chunks]) for j, name in enumerate(EDGE_ROW)}
    ids = {name: np.full(total, value, dtype=np.int32) for name, value in constants.items()}
    _bulk(bind, table, {**ids, **columns})


def _bulk(bind: sa.Connection, table: str, arrays: dict[str, np.ndarray]) -> None:
    """Equally long NumPy columns into a table: Arrow on DuckDB, binary COPY on PostgreSQL."""
    raw = bind.connection.driver_connection
    assert raw is not None, "an open connection has a DBAPI connection"
    if _postgres():
        with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(arrays)}) FROM STDIN (FORMAT BINARY)") as copy:
            for chunk in pg_copy.encode_chunks(list(arrays.values())):
                copy.write(chunk)
        return
    duck = getattr(raw, "_ConnectionWrapper__c", raw)
    duck.register("_migration_rows", pa.table(arrays).combine_chunks())
    try:
        duck.execute(f"INSERT INTO {table} ({', '.join(arrays)}) SELECT * FROM _migration_rows")
    finally:
        duck.unregister("_migration_rows")
