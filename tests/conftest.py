"""Shared fixtures: a fresh, migrated DuckDB catalog file per test, and the open catalog.

The schema is migrated once per session into a template file, which each test copies (a copy
is much faster than running the migration again).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog.engine import Catalog, close_all, close_catalogs_of, open_catalog


@pytest.fixture(scope="session")
def _catalog_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from catalog.migrations.admin import init_catalog

    path = tmp_path_factory.mktemp("catalog-template") / "template.duckdb"
    init_catalog(path)
    close_all()
    assert not path.with_name(path.name + ".wal").exists(), "template left a WAL behind"
    return path


@pytest.fixture
def catalog_path(_catalog_template: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh DuckDB catalog file at the head schema (closed: open it as the test needs)."""
    path = tmp_path / "catalog.duckdb"
    shutil.copyfile(_catalog_template, path)
    yield path
    close_catalogs_of(path)  # what the test (or a command it invoked) left open in this process


@pytest.fixture
def cat(catalog_path: Path) -> Iterator[Catalog]:
    """The fresh catalog, open read-write."""
    catalog = open_catalog(catalog_path)
    yield catalog
    catalog.close()
