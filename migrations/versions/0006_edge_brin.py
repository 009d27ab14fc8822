"""PostgreSQL: the `edge` table's run index as a BRIN index (a few pages instead of ~0.23 MB a run).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Written by hand (docs/architecture.md, "Conventions"). A run's top edges are written together
(one COPY), so its rows fill consecutive heap pages and a block-range index finds them as well as
the B-tree did (`DELETE FROM edge WHERE run_id = …`, `edges_v` filtered by run), at a few 8 kB pages
for the whole table instead of ~7 bytes a row (see
docs/results.md, "Catalog at 10,000 runs: large tables and storage per run"). `autosummarize`
summarises each range as it fills, so new runs need no VACUUM to be found quickly. DuckDB has no
index on `edge` (0001): nothing changes there.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.drop_index("ix_edge_run_id", table_name="edge")
    op.create_index(
        "ix_edge_run_id", "edge", ["run_id"], postgresql_using="brin", postgresql_with={"autosummarize": "on"}
    )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.drop_index("ix_edge_run_id", table_name="edge")
    op.create_index("ix_edge_run_id", "edge", ["run_id"])
