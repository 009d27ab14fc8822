"""The layout's rules, checked on the source (ast), not by convention.

- no import circle between project modules (every `import`, at module level or inside a function,
  except `if TYPE_CHECKING:` blocks, which never run);
- `catalog` never imports torch (the base install has none), nor does the web view, which never
  imports `ingest` either;
- the libraries (`catalog`, `ingest`, `queries`) never import typer or `circuits`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("catalog", "ingest", "queries", "circuits", "migrations")
LIBRARIES = ("catalog", "ingest", "queries")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, name: str, is_package: bool, known: frozenset[str] = frozenset()) -> set[str]:
    """Every module `path` imports (absolute dotted names), skipping TYPE_CHECKING blocks.

    `from pkg import sub` counts as importing `pkg.sub` when that is a module (in `known`), else
    as importing `pkg` (a name defined by the package).
    """
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in known else module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def _graph() -> tuple[nx.DiGraph, dict[str, set[str]]]:
    modules = _modules()
    graph = nx.DiGraph()
    external: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph.add_node(name)
        imports = _imports(path, name, path.name == "__init__.py", frozenset(modules))
        external[name] = imports
        for target in imports:
            if target in modules and target != name:
                graph.add_edge(name, target)
    return graph, external


GRAPH, IMPORTS = _graph()


def test_the_graph_covers_the_project():
    assert {"catalog.engine", "ingest.pipeline", "queries.overlap", "circuits.cli.main"} <= set(GRAPH)
    assert GRAPH.has_edge("circuits.cli.main", "circuits.cli.db")


def test_no_import_circles():
    cycles = list(nx.simple_cycles(GRAPH))
    assert not cycles, "import circles: " + "; ".join(" -> ".join([*c, c[0]]) for c in cycles[:10])


def test_catalog_never_imports_torch():
    offenders = {
        m: sorted(i for i in imps if i.split(".")[0] in ("torch", "torchvision"))
        for m, imps in IMPORTS.items()
        if m.split(".")[0] == "catalog"
    }
    assert not {m: i for m, i in offenders.items() if i}


def test_the_web_view_never_imports_ingest_or_torch():
    """Pages read the catalog only (a logit's class name is its stored label: docs/architecture.md, "Data flow of a query")."""
    offenders = {
        m: sorted(i for i in imps if i.split(".")[0] in ("ingest", "torch", "torchvision"))
        for m, imps in IMPORTS.items()
        if m.startswith("circuits.web")
    }
    assert not {m: i for m, i in offenders.items() if i}


@pytest.mark.parametrize("library", LIBRARIES)
def test_libraries_never_import_typer_or_the_cli(library):
    offenders = {
        m: sorted(i for i in imps if i.split(".")[0] in ("typer", "click", "circuits"))
        for m, imps in IMPORTS.items()
        if m.split(".")[0] == library
    }
    assert not {m: i for m, i in offenders.items() if i}


def test_dependencies_point_one_way():
    """catalog imports neither ingest nor queries; queries does not import ingest."""
    for source, target in GRAPH.edges:
        top_s, top_t = source.split(".")[0], target.split(".")[0]
        assert not (top_s == "catalog" and top_t in ("ingest", "queries", "circuits")), (source, target)
        assert not (top_s == "queries" and top_t in ("ingest", "circuits")), (source, target)


def test_the_checker_sees_a_circle(tmp_path):
    """The cycle check itself can fail: a two-module circle is found."""
    g = nx.DiGraph([("a", "b"), ("b", "a")])
    assert list(nx.simple_cycles(g))
    (tmp_path / "m.py").write_text("import os\nif TYPE_CHECKING:\n    import torch\ndef f():\n    from . import x\n")
    assert _imports(tmp_path / "m.py", "pkg.m", False) == {"os", "pkg"}
    assert _imports(tmp_path / "m.py", "pkg.m", False, frozenset({"pkg.x"})) == {"os", "pkg.x"}


HEAVY = ("torch", "sqlalchemy", "pyarrow", "alembic", "numpy", "networkx", "duckdb", "matplotlib")


def _modules_loaded_by(args: list[str], tmp_path: Path) -> tuple[int, list[str]]:
    """Run the `circuits` command in a fresh interpreter; (exit code, heavy modules it imported)."""
    import os
    import subprocess
    import sys

    code = (
        "import atexit, sys\n"
        f"atexit.register(lambda: print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
        "from circuits.cli.main import main\n"
        f"sys.argv = ['circuits', *{args!r}]\n"
        "main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    line = next(x for x in r.stdout.splitlines() if x.startswith("LOADED"))
    return r.returncode, ast.literal_eval(line.removeprefix("LOADED "))


def test_help_imports_nothing_heavy(tmp_path):
    """The mounted command modules import no library at import time (lazy imports in bodies)."""
    assert _modules_loaded_by(["--help"], tmp_path) == (0, [])


def test_sql_on_a_duckdb_file_imports_only_duckdb(catalog_path, tmp_path):
    """`circuits sql` on a DuckDB file goes through plain duckdb: no SQLAlchemy, pyarrow or Alembic."""
    code, loaded = _modules_loaded_by(["sql", "select 1", "--db", str(catalog_path)], tmp_path)
    assert code == 0
    assert not {"sqlalchemy", "pyarrow", "alembic", "torch"} & set(loaded), loaded
