"""Shared fixtures: a fresh, migrated DuckDB catalog file per test, and the open catalog.

The schema is migrated once per session into a template file, which each test copies (a copy
is much faster than running the migration again).
"""

from __future__ import annotations

import os

# Idle OpenMP threads spin by default; on a 2-core machine that makes torch tests several times
# slower (measured 65 s vs 6 s for the CLA tests). Must be set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The throw-away PostgreSQL test server is reached as its superuser, which `circuits sql` refuses
# unless told (catalog.sql_limits); tests of that refusal unset this.
os.environ.setdefault("CIRCUITS_SQL_ALLOW_SUPERUSER", "1")

import shutil
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import backends
import pytest
import typer.testing
from sqlalchemy import event
from sqlalchemy.engine import Engine
from typer.main import get_command

from catalog.engine import Catalog, close_all, close_catalogs_of, open_catalog

_COMMANDS: dict[int, tuple[typer.Typer, Any]] = {}


def _command_built_once(app: typer.Typer) -> Any:
    """Typer's `CliRunner.invoke` builds the click command from the Typer app on every call (~30 ms
    of signature inspection for this CLI; ~600 calls in the default suite). The apps do not change
    while the tests run, so each is built once."""
    entry = _COMMANDS.get(id(app))
    if entry is None or entry[0] is not app:
        entry = _COMMANDS[id(app)] = (app, get_command(app))
    return entry[1]


typer.testing._get_command = _command_built_once  # type: ignore[assignment]


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


# ---------------------------------------------------------------- both backends (DuckDB, PostgreSQL)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `pg` tests, with the reason, when no PostgreSQL server is given."""
    if backends.pg_server_url() is not None:
        return
    skip = pytest.mark.skip(reason=backends.PG_SKIP_REASON)
    for item in items:
        if "pg" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pg_server():
    """The PostgreSQL test server's URL (skips the test when `CIRCUITS_TEST_PG_URL` is unset)."""
    url = backends.pg_server_url()
    if url is None:
        pytest.skip(backends.PG_SKIP_REASON)
    return url


@pytest.fixture(scope="session")
def _pg_template(pg_server) -> Iterator[str]:
    """A database on the server migrated to the head schema, copied by each test's database."""
    from catalog.admin import init_catalog

    url = backends.create_database(pg_server, prefix="tmpl_")
    init_catalog(backends.url_text(url))
    close_all()
    yield url.database
    backends.drop_database(pg_server, url.database)


@pytest.fixture
def pg_url(pg_server, _pg_template) -> Iterator[str]:
    """A fresh PostgreSQL database at the head schema (its URL), dropped after the test."""
    url = backends.create_database(pg_server, template=_pg_template)
    text = backends.url_text(url)
    yield text
    close_catalogs_of(text)
    backends.drop_database(pg_server, url.database)


@pytest.fixture
def empty_pg_url(pg_server) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (no schema), dropped after the test."""
    url = backends.create_database(pg_server)
    text = backends.url_text(url)
    yield text
    close_catalogs_of(text)
    backends.drop_database(pg_server, url.database)


@pytest.fixture(params=backends.BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """ "duckdb" or "postgresql": tests using it (or `db_url`, `any_cat`) run on both."""
    return request.param


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest) -> str:
    """A fresh catalog at the head schema on the test's backend: a DuckDB file path or a PG URL."""
    if backend == "duckdb":
        return str(request.getfixturevalue("catalog_path"))
    return request.getfixturevalue("pg_url")


@pytest.fixture
def any_cat(db_url: str) -> Iterator[Catalog]:
    """The fresh catalog of `db_url`, open read-write (a module sets `cat = any_cat` to run on both)."""
    catalog = open_catalog(db_url)
    yield catalog
    catalog.close()


@pytest.fixture(scope="module", params=backends.BACKENDS)
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Where a module builds the catalog its tests share, once per backend: a DuckDB file path that
    does not exist yet, or an empty PostgreSQL database (`open_catalog(..., create=True)` migrates
    either)."""
    if request.param == "duckdb":
        yield str(tmp_path_factory.mktemp("module-catalog") / "catalog.duckdb")
        return
    server = request.getfixturevalue("pg_server")
    url = backends.create_database(server)
    text = backends.url_text(url)
    yield text
    close_catalogs_of(text)
    backends.drop_database(server, url.database)


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the browser the browser tests share (`test_serve_support.Browser`), if one started."""
    support = sys.modules.get("test_serve_support")
    if support is not None:
        support._SHARED.stop()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    close_all()
    for dialect in list(_DIALECTS):
        dialect._type_memos.clear()


# ------------------------------------------------ the transformer CLA tests' models (random init)


@pytest.fixture(scope="module")
def vit():
    """The small qkv/proj ViT of `tiny_vit.py`, 3 blocks."""
    import torch
    from tiny_vit import TinyViT

    torch.manual_seed(0)
    return TinyViT(depth=3).eval()


@pytest.fixture(scope="module")
def images():
    """Three 16-pixel images for `vit`."""
    import torch

    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def tv_vit():
    """torchvision's ViT (nn.MultiheadAttention, scaled-dot-product attention) at `vit`'s scale."""
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(
        image_size=32, patch_size=8, num_layers=3, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=5
    ).eval()


@pytest.fixture
def forward_grads(monkeypatch) -> list[bool]:
    """Whether each of `attribute`'s batch forwards kept autograd's graph, in call order."""
    import ingest.cla.attribution as attribution

    grads: list[bool] = []
    real = attribution._forward

    def recorded(model, layers, x, grad, *args):
        grads.append(grad)
        return real(model, layers, x, grad, *args)

    monkeypatch.setattr(attribution, "_forward", recorded)
    return grads
