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
from collections.abc import Iterator
from pathlib import Path

import pytest

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


# duckdb 2.0's nanobind bindings print ~100 lines of benign "leaked instance DuckDBPyType"
# warnings at interpreter teardown when torch is loaded in the same process (the CLI avoids them
# with an atexit hook in catalog.engine; a whole test session keeps more references alive).
# Those lines would bury pytest's summary, so the test process ends right after pytest has
# reported everything, with pytest's own exit status.
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _EXIT_STATUS and not os.environ.get("CIRCUITS_TEST_NORMAL_EXIT"):
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])
