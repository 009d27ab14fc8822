"""One complete run per provenance key: the `run_key` table, filled from existing runs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

Two processes ingesting the same model, layers, images and parameters used to store two complete
runs (re-run detection was check-then-write on a non-unique index). The key now has to be claimed
in `run_key`, whose primary key admits one run per key. A separate table rather than a partial
unique index (`WHERE status = 'complete'`, which DuckDB does not support) or a new unique column on
`run` (DuckDB cannot add a column with a constraint, nor update an indexed column freely): it is
created with its key inside CREATE TABLE (docs/architecture.md, "Conventions") and works the same on both databases. Its
foreign key to run exists on PostgreSQL only, like the others pointing at rows a run deletion
removes (see `catalog.models._pg_only_fk`). Existing catalogs: the newest complete run per key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_context().dialect.name == "postgresql"
    fk = [sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_run_key_run_id_run")] if pg else []
    op.create_table(
        "run_key",
        sa.Column("provenance_key", sa.String(64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("provenance_key", name="pk_run_key"),
        *fk,
    )
    op.execute(
        "INSERT INTO run_key (provenance_key, run_id) "
        "SELECT provenance_key, max(id) FROM run WHERE status = 'complete' GROUP BY provenance_key"
    )


def downgrade() -> None:
    op.drop_table("run_key")
