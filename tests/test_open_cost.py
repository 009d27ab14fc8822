"""Opening a catalog at the head revision pays one revision lookup, no table listing: the fresh
process of every command pays it (docs/results.md, "Catalog scale and storage")."""

from __future__ import annotations

import pytest

from catalog import migrate
from catalog.engine import close_all, open_catalog
from catalog.errors import SchemaOutdated


def test_open_at_head_reads_the_revision_without_listing_tables(db_url, monkeypatch):
    close_all()
    listed = []
    real = migrate.user_tables
    monkeypatch.setattr(migrate, "user_tables", lambda conn: listed.append(1) or real(conn))
    cat = open_catalog(db_url, read_only=True)
    try:
        with cat.engine.connect() as conn:
            assert migrate.current_revision(conn) is not None
    finally:
        cat.close()
    assert listed == []


def test_revision_lookup_tells_a_missing_version_table_from_a_catalog(db_url):
    close_all()
    cat = open_catalog(db_url)
    try:
        with cat.engine.begin() as conn:
            assert migrate.current_revision(conn) is not None
            conn.exec_driver_sql(f"DROP TABLE {migrate.VERSION_TABLE}")
            assert migrate.current_revision(conn) is None
    finally:
        cat.close()
    with pytest.raises(SchemaOutdated, match="no catalog schema revision"):
        open_catalog(db_url, read_only=True)
