"""SQL views that make the catalog pleasant to query (docs/architecture.md, "Catalog schema").

Names and channels instead of ids; only complete runs are visible through them, so a run that
failed (or is being written) never shows up. `edges_v` shows each run's *top edges* (every
neuron's strongest few per adjacent layer pair, `catalog.edge_select`), not every neuron pair:
the full score matrices are blobs in `run_matrix`, read with `catalog.store.read_run_matrices`.
`circuit_edges_v` shows every internal edge of every circuit. Migrations 0001 and 0004 create these
views with a frozen copy of this SQL; `create_all` builds tables and views straight from the models, for tests, and a test
checks both give the same result. The SQL runs unchanged on DuckDB and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from catalog.models import Base

CIRCUIT_NEURONS_V = """
SELECT c.id AS circuit_id, r.id AS run_id, m.name AS model, co.name AS concept,
       l.name AS layer, l.position AS position, n.channel AS channel, n.id AS neuron_id
FROM circuit c
JOIN run r ON r.id = c.run_id AND r.status = 'complete'
JOIN model m ON m.id = r.model_id
JOIN concept co ON co.id = r.concept_id
JOIN circuit_neuron cn ON cn.circuit_id = c.id
JOIN neuron n ON n.id = cn.neuron_id
JOIN layer l ON l.id = n.layer_id
"""

# Each run's top edges (all of them in catalogs made before schema 0004 was converted).
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

# Every internal edge (both ends in the circuit) of every circuit, with its run's score.
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

# Every pair (a < b) of circuits of one model (same name and weights), including pairs that share
# nothing; jaccard = shared / (size_a + size_b - shared).
CIRCUIT_OVERLAP_V = """
WITH sized AS (
    SELECT c.id AS circuit_id, r.model_id AS model_id, co.name AS concept,
           (SELECT count(*) FROM circuit_neuron cn WHERE cn.circuit_id = c.id) AS size
    FROM circuit c
    JOIN run r ON r.id = c.run_id AND r.status = 'complete'
    JOIN concept co ON co.id = r.concept_id
),
shared AS (
    SELECT a.circuit_id AS circuit_a, b.circuit_id AS circuit_b, count(*) AS n
    FROM circuit_neuron a
    JOIN circuit_neuron b ON b.neuron_id = a.neuron_id AND a.circuit_id < b.circuit_id
    GROUP BY a.circuit_id, b.circuit_id
)
SELECT a.circuit_id AS circuit_a, b.circuit_id AS circuit_b, m.name AS model,
       a.concept AS concept_a, b.concept AS concept_b,
       coalesce(s.n, 0) AS shared, a.size AS size_a, b.size AS size_b,
       CAST(coalesce(s.n, 0) AS DOUBLE PRECISION)
           / NULLIF(a.size + b.size - coalesce(s.n, 0), 0) AS jaccard
FROM sized a
JOIN sized b ON b.model_id = a.model_id AND a.circuit_id < b.circuit_id
JOIN model m ON m.id = a.model_id
LEFT JOIN shared s ON s.circuit_a = a.circuit_id AND s.circuit_b = b.circuit_id
"""

VIEWS: dict[str, str] = {
    "circuit_neurons_v": CIRCUIT_NEURONS_V,
    "edges_v": EDGES_V,
    "circuit_overlap_v": CIRCUIT_OVERLAP_V,
    "circuit_edges_v": CIRCUIT_EDGES_V,
}
"""View name → its SELECT, in creation order."""


def create_views(conn: Connection, views: dict[str, str] = VIEWS) -> None:
    """Create the catalog's views on an open connection (inside the caller's transaction).

    Args:
        conn: a connection whose database already has the catalog's tables.
        views: view name → SELECT; defaults to the current definitions.
    """
    for name, select in views.items():
        conn.execute(text(f"CREATE VIEW {name} AS {select}"))


def drop_views(conn: Connection, names: list[str] | None = None) -> None:
    """Drop the catalog's views (reverse creation order); missing ones are skipped.

    Args:
        conn: an open connection.
        names: the views to drop; defaults to every view in `VIEWS`.
    """
    for name in reversed(names if names is not None else list(VIEWS)):
        conn.execute(text(f"DROP VIEW IF EXISTS {name}"))


def create_all(bind: Engine | Connection) -> None:
    """Create every table, sequence, index and view from the models, without Alembic.

    For tests and comparisons: a catalog made this way has no `alembic_version`, so
    `open_catalog` treats it as foreign. Real catalogs are made by `circuits db init`.

    Args:
        bind: an engine (a transaction is opened and committed) or a connection (the caller's
            transaction is used).
    """
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            create_all(conn)
        return
    Base.metadata.create_all(bind)
    create_views(bind)
