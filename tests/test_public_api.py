"""Each package's public API is visible to dir()/tab completion, resolves, and stays cheap to import."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("catalog", "ingest", "queries")


@pytest.mark.parametrize("name", PACKAGES)
def test_dir_lists_all_and_every_name_resolves(name):
    package = importlib.import_module(name)
    assert package.__all__, f"{name} exports nothing"
    assert set(package.__all__) <= set(dir(package))
    for attr in package.__all__:
        assert getattr(package, attr) is not None, f"{name}.{attr}"
    with pytest.raises(AttributeError):
        _ = package.no_such_name


@pytest.mark.parametrize("name", PACKAGES)
def test_type_checking_block_imports_every_export(name):
    """Type checkers see what `dir()` sees: the TYPE_CHECKING block names every lazy export."""
    tree = ast.parse((ROOT / name / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    imported = {a.asname or a.name for n in ast.walk(block) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert set(importlib.import_module(name).__all__) == imported


def test_notebook_names_are_exported():
    import catalog
    import ingest
    import queries

    assert {
        "attribute",
        "attribute_reference",
        "find_circuit",
        "Circuit",
        "load_model",
        "preprocess",
        "evaluate",
        "apply_mask",
        "bake_mask",
        "ingest_concept",
        "IngestConfig",
        "ablate",
        "refine",
        "prune_circuit",
        "prune_edges",
    } <= set(dir(ingest))
    assert {
        "open_catalog",
        "Catalog",
        "CatalogError",
        "NotFound",
        "RunStatus",
        "InterventionKind",
        "Metric",
        "MaskKind",
        "run_query",
    } <= set(dir(catalog))
    assert {"overlap_matrix", "circuit_graph", "list_circuits", "export_mask", "plan_pruning"} <= set(dir(queries))
    assert ingest.ingest_concept.__module__ == "ingest.pipeline"
    assert catalog.open_catalog.__module__ == "catalog.engine"


def test_importing_the_packages_loads_nothing_heavy():
    code = (
        "import sys, catalog, ingest, queries; dir(catalog); dir(ingest); "
        "heavy = sorted(m for m in ('torch', 'sqlalchemy', 'pyarrow', 'duckdb', 'numpy') if m in sys.modules); "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_refine_path_does_not_import_torch():
    """`circuits refine` needs the search (NumPy) only: ingest.cla loads torch on demand."""
    code = "import sys; from ingest.refinement import refine; from ingest.cla.search import find_circuit; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", (*PACKAGES, "ingest.cla"))
def test_no_exported_name_is_also_a_submodule(name):
    """An exported function or class never shares its name with a submodule of its package (the
    import system would rebind the name to the module): `attribute` lives in `ingest.cla.attribution`."""
    import pkgutil

    package = importlib.import_module(name)
    submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    for attr in set(package.__all__) & submodules:
        assert isinstance(getattr(package, attr), type(sys)), f"{name}.{attr} is both an export and a submodule"
    import ingest.cla.attribution  # noqa: F401 (loading the module leaves the exported function in place)
    from ingest.cla import attribute

    assert type(attribute).__name__ == "function" and sys.modules["ingest.cla.attribution"].attribute is attribute


def test_renamed_names_keep_their_old_name_for_one_release():
    import ingest
    from catalog import store

    assert ingest.ingest is ingest.ingest_concept
    assert store.list_circuits is store.find_circuits
