"""Thumbnails: neuron patches and example-image thumbnails (catalog.media).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Written by hand (docs/architecture.md, "Conventions"): two new tables, keys inside CREATE TABLE, no index and no sequence
(composite primary keys). The foreign key to run exists on PostgreSQL only, as in 0001, and cascades
(deleting a run deletes its patches).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _pg_only_fk(column: str, target: str, name: str) -> list[sa.ForeignKeyConstraint]:
    if op.get_context().dialect.name != "postgresql":
        return []
    return [sa.ForeignKeyConstraint([column], [target], name=name, ondelete="CASCADE")]


def upgrade() -> None:
    op.create_table(
        "neuron_patch",
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
        sa.PrimaryKeyConstraint("run_id", "neuron_id", "rank", name="pk_neuron_patch"),
        sa.ForeignKeyConstraint(["neuron_id"], ["neuron.id"], name="fk_neuron_patch_neuron_id_neuron"),
        sa.ForeignKeyConstraint(
            ["example_image_id"], ["example_image.id"], name="fk_neuron_patch_example_image_id_example_image"
        ),
        *_pg_only_fk("run_id", "run.id", "fk_neuron_patch_run_id_run"),
    )
    op.create_table(
        "image_thumbnail",
        sa.Column("example_image_id", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("mime", sa.String(40), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("example_image_id", name="pk_image_thumbnail"),
        sa.ForeignKeyConstraint(
            ["example_image_id"], ["example_image.id"], name="fk_image_thumbnail_example_image_id_example_image"
        ),
    )


def downgrade() -> None:
    op.drop_table("image_thumbnail")
    op.drop_table("neuron_patch")
