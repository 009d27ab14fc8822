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

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _not_null(*columns: tuple[str, Any]) -> list[sa.Column]:
    """NOT NULL columns from (name, SQLAlchemy type) pairs."""
    return [sa.Column(name, type_, nullable=False) for name, type_ in columns]


_IMAGE = (("mime", sa.String(40)), ("data", sa.LargeBinary))  # image bytes and their type (catalog.media)
_BOX = tuple((corner, sa.Integer) for corner in ("x0", "y0", "x1", "y1"))  # a patch's box in its image


def _neuron_table(name: str, *columns: sa.Column, key: tuple[str, ...] = (), references: tuple[str, ...] = ()) -> None:
    """A table of rows per run and circuit neuron: `run_id`, `neuron_id`, then `columns`.

    Its primary key (run_id, neuron_id, *key) and foreign keys (to neuron, to the tables named by
    `references` through their `<table>_id` columns) are declared inside CREATE TABLE; the one to
    run exists on PostgreSQL only and cascades, as for `neuron_patch` (0002). Constraint names
    follow the catalog's naming convention.
    """
    fks: list[tuple[str, str, str | None]] = [
        ("neuron_id", "neuron", None),
        *((f"{t}_id", t, None) for t in references),
    ]
    if op.get_context().dialect.name == "postgresql":
        fks.append(("run_id", "run", "CASCADE"))
    op.create_table(
        name,
        *_not_null(("run_id", sa.Integer), ("neuron_id", sa.Integer)),
        *columns,
        sa.PrimaryKeyConstraint("run_id", "neuron_id", *key, name=f"pk_{name}"),
        *(
            sa.ForeignKeyConstraint([c], [f"{t}.id"], name=f"fk_{name}_{c}_{t}", ondelete=on_delete)
            for c, t, on_delete in fks
        ),
    )


def upgrade() -> None:
    _neuron_table(
        "neuron_featurevis",
        *_not_null(
            ("width", sa.Integer),
            ("height", sa.Integer),
            ("activation", sa.Double),
            ("params", sa.JSON),
            *_IMAGE,
            ("created_at", sa.DateTime),
        ),
    )
    op.add_column("neuron_patch", sa.Column("heatmap", sa.LargeBinary, nullable=True))
    _neuron_table(  # the columns of neuron_patch (0002, with the heat-map above)
        "neuron_reference_patch",
        *_not_null(("rank", sa.Integer), ("example_image_id", sa.Integer), ("activation", sa.Double), *_BOX, *_IMAGE),
        sa.Column("heatmap", sa.LargeBinary, nullable=True),
        key=("rank",),
        references=("example_image",),
    )


def downgrade() -> None:
    op.drop_table("neuron_reference_patch")
    op.drop_column("neuron_patch", "heatmap")
    op.drop_table("neuron_featurevis")
