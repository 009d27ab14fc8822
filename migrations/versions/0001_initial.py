"""Initial catalog: every table, sequence, index and view.

Revision ID: 0001
Revises:
Create Date: 2025-11-21

Written by hand (DuckDB limits, docs/architecture.md, "Conventions"): keys and unique constraints inside CREATE TABLE,
sequences created explicitly (autogenerate never emits them), view SQL frozen here rather than
imported, so later edits of `catalog.views` need a new revision. Foreign keys to run, circuit and
intervention exist on PostgreSQL only (DuckDB cannot delete a parent and its children in one
transaction; see `catalog.models._pg_only_fk`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SEQUENCES = [
    "model_id_seq",
    "layer_id_seq",
    "neuron_id_seq",
    "concept_id_seq",
    "example_image_id_seq",
    "run_id_seq",
    "circuit_id_seq",
    "intervention_id_seq",
    "evaluation_id_seq",
]

VIEWS = {
    "circuit_neurons_v": """
SELECT c.id AS circuit_id, r.id AS run_id, m.name AS model, co.name AS concept,
       l.name AS layer, l.position AS position, n.channel AS channel, n.id AS neuron_id
FROM circuit c
JOIN run r ON r.id = c.run_id AND r.status = 'complete'
JOIN model m ON m.id = r.model_id
JOIN concept co ON co.id = r.concept_id
JOIN circuit_neuron cn ON cn.circuit_id = c.id
JOIN neuron n ON n.id = cn.neuron_id
JOIN layer l ON l.id = n.layer_id
""",
    "edges_v": """
SELECT e.run_id AS run_id,
       ls.name AS src_layer, ls.position AS src_position, ns.channel AS src_channel,
       ld.name AS dst_layer, nd.channel AS dst_channel, e.score AS score
FROM edge e
JOIN run r ON r.id = e.run_id AND r.status = 'complete'
JOIN neuron ns ON ns.id = e.src_neuron_id
JOIN layer ls ON ls.id = ns.layer_id
JOIN neuron nd ON nd.id = e.dst_neuron_id
JOIN layer ld ON ld.id = nd.layer_id
""",
    "circuit_overlap_v": """
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
""",
}


def _id(seq: str) -> sa.Column:
    return sa.Column("id", sa.Integer, sa.Sequence(seq), nullable=False)


def _pg_only_fk(column: str, target: str, name: str) -> list[sa.ForeignKeyConstraint]:
    if op.get_context().dialect.name != "postgresql":
        return []
    return [sa.ForeignKeyConstraint([column], [target], name=name)]


def upgrade() -> None:
    for name in SEQUENCES:
        op.execute(sa.schema.CreateSequence(sa.Sequence(name)))

    op.create_table(
        "model",
        _id("model_id_seq"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("architecture", sa.String(200), nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("layer_order", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model"),
        sa.UniqueConstraint("name", "weights_sha256", name="uq_model_name_weights_sha256"),
    )
    op.create_table(
        "layer",
        _id("layer_id_seq"),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_layer"),
        sa.UniqueConstraint("model_id", "name", name="uq_layer_model_id_name"),
        sa.UniqueConstraint("model_id", "position", name="uq_layer_model_id_position"),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], name="fk_layer_model_id_model"),
    )
    op.create_table(
        "neuron",
        _id("neuron_id_seq"),
        sa.Column("layer_id", sa.Integer, nullable=False),
        sa.Column("channel", sa.Integer, nullable=False),
        sa.Column("label", sa.String(300), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_neuron"),
        sa.UniqueConstraint("layer_id", "channel", name="uq_neuron_layer_id_channel"),
        sa.ForeignKeyConstraint(["layer_id"], ["layer.id"], name="fk_neuron_layer_id_layer"),
    )
    op.create_table(
        "concept",
        _id("concept_id_seq"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_concept"),
        sa.UniqueConstraint("name", name="uq_concept_name"),
    )
    op.create_table(
        "example_image",
        _id("example_image_id_seq"),
        sa.Column("concept_id", sa.Integer, nullable=False),
        sa.Column("image_set_sha256", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source_path", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_example_image"),
        sa.UniqueConstraint(
            "concept_id",
            "image_set_sha256",
            "position",
            name="uq_example_image_concept_id_image_set_sha256_position",
        ),
        sa.ForeignKeyConstraint(["concept_id"], ["concept.id"], name="fk_example_image_concept_id_concept"),
    )
    op.create_table(
        "run",
        _id("run_id_seq"),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("concept_id", sa.Integer, nullable=False),
        sa.Column("layer_names", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("image_set_sha256", sa.String(64), nullable=False),
        sa.Column("n_images", sa.Integer, nullable=False),
        sa.Column("provenance_key", sa.String(64), nullable=False),
        sa.Column("library_versions", sa.JSON, nullable=False),
        sa.Column("device", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("seconds", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_run"),
        sa.CheckConstraint("status IN ('running', 'complete', 'failed')", name=op.f("ck_run_status")),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], name="fk_run_model_id_model"),
        sa.ForeignKeyConstraint(["concept_id"], ["concept.id"], name="fk_run_concept_id_concept"),
    )
    op.create_index("ix_run_provenance_key", "run", ["provenance_key"])
    op.create_index("ix_run_model_id_concept_id", "run", ["model_id", "concept_id"])
    op.create_table(
        "edge",
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("src_neuron_id", sa.Integer, nullable=False),
        sa.Column("dst_neuron_id", sa.Integer, nullable=False),
        sa.Column("score", sa.REAL, nullable=False),
    )
    if op.get_context().dialect.name == "postgresql":
        op.create_index("ix_edge_run_id", "edge", ["run_id"])
    op.create_table(
        "circuit",
        _id("circuit_id_seq"),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("k", sa.JSON, nullable=False),
        sa.Column("fixed", sa.JSON, nullable=True),
        sa.Column("sweeps", sa.Integer, nullable=False),
        sa.Column("converged", sa.Boolean, nullable=False),
        sa.Column("objective", sa.Double, nullable=False),
        sa.Column("objective_history", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_circuit"),
        *_pg_only_fk("run_id", "run.id", "fk_circuit_run_id_run"),
    )
    op.create_index("ix_circuit_run_id", "circuit", ["run_id"])
    op.create_table(
        "circuit_neuron",
        sa.Column("circuit_id", sa.Integer, nullable=False),
        sa.Column("neuron_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("circuit_id", "neuron_id", name="pk_circuit_neuron"),
        sa.ForeignKeyConstraint(["neuron_id"], ["neuron.id"], name="fk_circuit_neuron_neuron_id_neuron"),
        *_pg_only_fk("circuit_id", "circuit.id", "fk_circuit_neuron_circuit_id_circuit"),
    )
    op.create_table(
        "intervention",
        _id("intervention_id_seq"),
        sa.Column("circuit_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("edge_fraction", sa.Double, nullable=False),
        sa.Column("baseline_edge_fraction", sa.Double, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_intervention"),
        sa.CheckConstraint("kind IN ('circuit', 'edge')", name=op.f("ck_intervention_kind")),
        *_pg_only_fk("circuit_id", "circuit.id", "fk_intervention_circuit_id_circuit"),
    )
    op.create_index("ix_intervention_circuit_id", "intervention", ["circuit_id"])
    op.create_table(
        "evaluation",
        _id("evaluation_id_seq"),
        sa.Column("intervention_id", sa.Integer, nullable=False),
        sa.Column("image_set", sa.String(300), nullable=False),
        sa.Column("image_set_sha256", sa.String(64), nullable=False),
        sa.Column("n_images", sa.Integer, nullable=False),
        sa.Column("metric", sa.String(50), nullable=False),
        sa.Column("clean_value", sa.Double, nullable=True),
        sa.Column("value", sa.Double, nullable=False),
        sa.Column("baseline_value", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_evaluation"),
        *_pg_only_fk("intervention_id", "intervention.id", "fk_evaluation_intervention_id_intervention"),
    )
    op.create_index("ix_evaluation_intervention_id", "evaluation", ["intervention_id"])

    for name, select in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {select}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
    for table in (
        "evaluation",
        "intervention",
        "circuit_neuron",
        "circuit",
        "edge",
        "run",
        "example_image",
        "concept",
        "neuron",
        "layer",
        "model",
    ):
        op.drop_table(table)
    for name in reversed(SEQUENCES):
        op.execute(sa.schema.DropSequence(sa.Sequence(name)))
