"""Looking at neurons: feature visualisations, and where each patch's neuron fires.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

Written by hand (docs/architecture.md, "Conventions"):
- new table `neuron_featurevis` (`ingest.featurevis`): one optimised picture per circuit neuron
  of a run, with its parameters; key and foreign key to neuron inside CREATE TABLE, the foreign
  key to run on PostgreSQL only and cascading, as for `neuron_patch` (0002);
- new table `neuron_reference_patch`: each circuit neuron's top patches from its model's
  reference image set (`ingest.reference`), the columns of `neuron_patch`, keys as there;
- `neuron_patch.heatmap`: a nullable column (DuckDB adds nullable columns to a table with keys;
  patches stored before have none): the example image with the neuron's activation map over it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_context().dialect.name == "postgresql"
    run_fk = (
        [sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_neuron_featurevis_run_id_run", ondelete="CASCADE")]
        if pg
        else []
    )
    op.create_table(
        "neuron_featurevis",
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("neuron_id", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("activation", sa.Double, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("mime", sa.String(40), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "neuron_id", name="pk_neuron_featurevis"),
        sa.ForeignKeyConstraint(["neuron_id"], ["neuron.id"], name="fk_neuron_featurevis_neuron_id_neuron"),
        *run_fk,
    )
    op.add_column("neuron_patch", sa.Column("heatmap", sa.LargeBinary, nullable=True))
    ref_fk = (
        [
            sa.ForeignKeyConstraint(
                ["run_id"], ["run.id"], name="fk_neuron_reference_patch_run_id_run", ondelete="CASCADE"
            )
        ]
        if pg
        else []
    )
    op.create_table(
        "neuron_reference_patch",
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("neuron_id", sa.Integer, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("example_image_id", sa.Integer, nullable=False),
        sa.Column("activation", sa.Double, nullable=False),
        sa.Column("x0", sa.Integer, nullable=False),
        sa.Column("y0", sa.Integer, nullable=False),
        sa.Column("x1", sa.Integer, nullable=False),
        sa.Column("y1", sa.Integer, nullable=False),
        sa.Column("mime", sa.String(40), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("heatmap", sa.LargeBinary, nullable=True),
        sa.PrimaryKeyConstraint("run_id", "neuron_id", "rank", name="pk_neuron_reference_patch"),
        sa.ForeignKeyConstraint(["neuron_id"], ["neuron.id"], name="fk_neuron_reference_patch_neuron_id_neuron"),
        sa.ForeignKeyConstraint(
            ["example_image_id"], ["example_image.id"], name="fk_neuron_reference_patch_example_image_id_example_image"
        ),
        *ref_fk,
    )


def downgrade() -> None:
    op.drop_table("neuron_reference_patch")
    op.drop_column("neuron_patch", "heatmap")
    op.drop_table("neuron_featurevis")
