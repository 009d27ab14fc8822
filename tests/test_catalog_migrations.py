"""Migrations: one head, upgrade equals create_all, downgrade, outdated/foreign databases."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from catalog import migrate, revision
from catalog.admin import catalog_status, upgrade_catalog
from catalog.connect import build_engine, resolve_url
from catalog.engine import open_catalog
from catalog.errors import CatalogError, SchemaOutdated
from catalog.models import Base
from catalog.views import VIEWS, create_all

HEAD = revision.SCHEMA_HEAD  # captured before any test patches it


def _engine(path: Path) -> sa.Engine:
    return build_engine(resolve_url(path), read_only=False, poolclass=sa.pool.NullPool)


def _describe(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Everything DuckDB's catalog says about the user schema, except Alembic's table."""
    queries = {
        "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM duckdb_columns() WHERE NOT internal AND table_name <> 'alembic_version'",
        "constraints": "SELECT table_name, constraint_type, constraint_text FROM duckdb_constraints() "
        "WHERE table_name <> 'alembic_version'",
        "indexes": "SELECT table_name, index_name, sql FROM duckdb_indexes()",
        "sequences": "SELECT sequence_name FROM duckdb_sequences()",
        "views": "SELECT view_name FROM duckdb_views() WHERE NOT internal",
        "tables": "SELECT table_name FROM duckdb_tables() WHERE table_name <> 'alembic_version'",
    }
    with engine.connect() as conn:
        return {k: sorted(tuple(r) for r in conn.execute(sa.text(q))) for k, q in queries.items()}


def test_one_head_equal_to_schema_head():
    assert migrate.script_heads() == (revision.SCHEMA_HEAD,)
    files = sorted(p.name for p in (migrate.MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))
    assert files and all(name[:4].isdigit() and name[4] == "_" for name in files)


def test_upgrade_equals_create_all_and_downgrade_removes_everything(tmp_path):
    migrated, created = _engine(tmp_path / "m.duckdb"), _engine(tmp_path / "c.duckdb")
    with migrated.begin() as conn:
        migrate.upgrade(conn)
    create_all(created)
    a, b = _describe(migrated), _describe(created)
    assert a == b
    assert {v for (v,) in a["views"]} == set(VIEWS)
    assert {t for (t,) in a["tables"]} == set(Base.metadata.tables)
    assert len(a["sequences"]) == 9 and len(a["indexes"]) == 5
    with migrated.connect() as conn:
        assert migrate.current_revision(conn) == revision.SCHEMA_HEAD

    with migrated.begin() as conn:
        migrate.downgrade(conn, "base")
    after = _describe(migrated)
    assert after["tables"] == after["views"] == after["sequences"] == after["indexes"] == []
    with migrated.connect() as conn:
        assert migrate.current_revision(conn) is None
    with migrated.begin() as conn:  # and back up again
        migrate.upgrade(conn)
    assert _describe(migrated) == a


def test_postgresql_migration_matches_models_offline():
    """The migration rendered for PostgreSQL (no server) has the models' keys and indexes."""
    from alembic import command

    cfg = migrate.alembic_config()
    cfg.set_main_option("sqlalchemy.url", "postgresql+psycopg://user@localhost/circuits")
    cfg.output_buffer = io.StringIO()
    command.upgrade(cfg, "head", sql=True)
    script = cfg.output_buffer.getvalue()
    dialect = postgresql.psycopg.dialect()
    for table in Base.metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=dialect))
        for line in ddl.splitlines():
            if "CONSTRAINT" in line:
                assert line.strip().rstrip(",").strip() in script, line
        for index in table.indexes:
            assert str(CreateIndex(index).compile(dialect=dialect)).strip() in script
    assert "CREATE INDEX ix_edge_run_id ON edge (run_id)" in script
    assert all(f"CREATE VIEW {name}" in script for name in VIEWS)


def test_outdated_database_names_upgrade(catalog_path, monkeypatch):
    monkeypatch.setattr(revision, "SCHEMA_HEAD", f"{int(revision.SCHEMA_HEAD) + 1:04d}")
    with pytest.raises(SchemaOutdated) as err:
        open_catalog(catalog_path, read_only=True)
    message = str(err.value)
    assert HEAD in message and revision.SCHEMA_HEAD in message
    assert f"circuits db upgrade --db {catalog_path}" in message
    assert catalog_status(catalog_path).state == "outdated"


def test_newer_database_names_package_upgrade(catalog_path, monkeypatch):
    monkeypatch.setattr(revision, "SCHEMA_HEAD", "0000")
    with pytest.raises(SchemaOutdated, match="upgrade visual-circuit-catalog"):
        open_catalog(catalog_path)
    with pytest.raises(SchemaOutdated):
        upgrade_catalog(catalog_path)


def test_foreign_database_is_refused_then_stamped_by_upgrade(tmp_path):
    path = tmp_path / "foreign.duckdb"
    engine = _engine(path)
    with engine.begin() as conn:  # the schema, but made without Alembic, and one view missing
        Base.metadata.create_all(conn)
        conn.execute(sa.text(f"CREATE VIEW edges_v AS {VIEWS['edges_v']}"))
    engine.dispose()
    with pytest.raises(SchemaOutdated, match=f"circuits db upgrade --db {path}"):
        open_catalog(path)
    result = upgrade_catalog(path)
    assert result.stamped and result.after == revision.SCHEMA_HEAD and result.before is None
    assert result.backup is not None and result.backup.exists()
    cat = open_catalog(path, read_only=True)
    with cat.session() as s:
        views = set(sa.inspect(s.connection()).get_view_names())
    assert views == set(VIEWS)
    cat.close()


def test_foreign_database_with_other_tables_is_not_stamped(tmp_path):
    path = tmp_path / "other.duckdb"
    engine = _engine(path)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE run (x INTEGER)"))
    engine.dispose()
    with pytest.raises(CatalogError, match="not a circuits catalog"):
        upgrade_catalog(path, backup=False)
    assert catalog_status(path).state == "foreign"


def test_later_revision_upgrades_and_downgrades_on_duckdb(catalog_path, tmp_path, monkeypatch):
    """A second, additive revision (as future ones will be) runs on DuckDB through env.py."""
    extra = tmp_path / "versions"
    extra.mkdir()
    later = f"{int(HEAD) + 1:04d}"
    (extra / f"{later}_note.py").write_text(
        textwrap.dedent(f'''
        import sqlalchemy as sa
        from alembic import op

        revision = "{later}"
        down_revision = "{HEAD}"
        branch_labels = None
        depends_on = None

        def upgrade():
            op.add_column("edge", sa.Column("note", sa.Text, nullable=True))

        def downgrade():
            op.drop_column("edge", "note")
    ''')
    )
    assert migrate.script_heads(version_locations=[extra]) == (later,)
    engine = _engine(catalog_path)
    with engine.begin() as conn:
        migrate.upgrade(conn, version_locations=[extra])
    with engine.connect() as conn:
        assert migrate.current_revision(conn) == later
        assert "note" in {c["name"] for c in sa.inspect(conn).get_columns("edge")}
    with engine.begin() as conn:
        migrate.downgrade(conn, HEAD, version_locations=[extra])
    with engine.connect() as conn:
        assert migrate.current_revision(conn) == HEAD
        assert "note" not in {c["name"] for c in sa.inspect(conn).get_columns("edge")}
    engine.dispose()


def test_0003_keeps_the_newest_complete_run_per_provenance_key(db_url):
    """Upgrading a catalog from before 0003 that holds duplicate complete runs keys each by its newest."""
    engine = build_engine(resolve_url(db_url), read_only=False, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        migrate.downgrade(conn, "0001")
        conn.execute(
            sa.text(
                "INSERT INTO model (id, name, architecture, weights_sha256, layer_order, created_at) "
                "VALUES (1, 'm', 'cnn', 'w', '[]', TIMESTAMP '2025-01-01 00:00:00')"
            )
        )
        conn.execute(sa.text("INSERT INTO concept (id, name) VALUES (1, 'c')"))
        for run_id, key, status in (
            (1, "k1", "complete"),
            (2, "k1", "complete"),
            (3, "k1", "failed"),
            (4, "k2", "complete"),
            (5, "k3", "failed"),
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO run (id, model_id, concept_id, layer_names, params, image_set_sha256, n_images, "
                    "provenance_key, library_versions, device, status, started_at) "
                    "VALUES (:id, 1, 1, '[]', '{}', 'i', 1, :key, '{}', 'cpu', :status, TIMESTAMP '2025-01-01 00:00:00')"
                ),
                {"id": run_id, "key": key, "status": status},
            )
        migrate.upgrade(conn)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT provenance_key, run_id FROM run_key ORDER BY 1")).all()
        assert migrate.current_revision(conn) == revision.SCHEMA_HEAD
    engine.dispose()
    assert [tuple(r) for r in rows] == [("k1", 2), ("k2", 4)]
