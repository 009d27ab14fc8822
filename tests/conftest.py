"""Shared fixtures: a fresh, migrated DuckDB catalog file per test, and the open catalog.

The schema is migrated once per session into a template file, which each test copies (a copy
is much faster than running the migration again).
"""

from __future__ import annotations

import os

# Idle OpenMP threads spin by default; on a 2-core machine that makes torch tests several times
# slower (measured 65 s vs 6 s for the CLA tests). Must be set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from catalog.engine import Catalog, close_all, close_catalogs_of, open_catalog


@pytest.fixture(scope="session")
def _catalog_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from catalog.admin import init_catalog

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


# duckdb 2.0's nanobind bindings print ~100 lines of "leaked instance DuckDBPyType" at interpreter
# teardown when a DuckDBPyType outlives the module (torch loaded in the same process makes it
# show). What keeps them alive in a test session is SQLAlchemy's per-dialect result-processor
# memo (`dialect._type_memos[type]["result"]`), keyed by the DuckDB cursor's type codes; the
# module-level constants are dropped by catalog.engine's atexit hook. Clearing the memos of every
# dialect that connected lets the interpreter exit normally (atexit and plugin teardown run) with
# pytest's summary as the last output.
_DIALECTS: weakref.WeakSet = weakref.WeakSet()


@event.listens_for(Engine, "engine_connect")
def _remember_dialect(connection) -> None:
    _DIALECTS.add(connection.dialect)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    close_all()
    for dialect in list(_DIALECTS):
        dialect._type_memos.clear()
