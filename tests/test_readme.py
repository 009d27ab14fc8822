"""The README cannot rot: its Python API workflow runs, its SQL runs against a demo catalog, its
command reference is complete, its links resolve, and it never points outside the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from circuits.cli.main import app

README = (Path(__file__).parent.parent / "README.md").read_text()
QUESTIONS = (Path(__file__).parent.parent / "docs" / "questions.md").read_text()
runner = CliRunner()


def _sql_blocks(text: str) -> list[str]:
    return re.findall(r"```sql\n(.*?)```", text, re.S)


def _questions() -> list[str]:
    """docs/questions.md's queries; the README's are some of them."""
    section = README.split("## Questions you can ask", 1)[1].split("\n## ", 1)[0]
    readme, docs = _sql_blocks(section), _sql_blocks(QUESTIONS)
    assert readme and set(readme) <= set(docs), "the README's questions must be docs/questions.md's"
    return docs


def _commands(group=None, prefix=""):
    from typer.main import get_command

    group = group or get_command(app)
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


# A subset of CatFish-synth that every README question has rows in: 4 primitives and 3 of their
# classes, with class pairs that share a primitive and pairs that share none (the reuse claim).
DEMO_PRIMITIVES = ("stripes", "checker", "dots", "star")
DEMO_CLASSES = ("stripes_star", "checker_star", "checker_dots")
DEMO_SIZES = {"n_concept_images": 8, "n_eval_images": 12}


def _run_demo(out: Path, primitives=None, classes=None) -> str:
    """`circuits demo`'s code (`run_demo`) into `out`, on every concept or only the ones given."""
    from circuits.demo import DemoConfig, run_demo
    from ingest.datasets import catfish

    db = str(out / "demo.duckdb")
    with pytest.MonkeyPatch.context() as mp:
        if primitives is not None:
            mp.setattr(catfish, "PRIMITIVES", tuple(primitives))
            mp.setattr(catfish, "CLASS_PARTS", {c: catfish.CLASS_PARTS[c] for c in classes})
        run_demo(db, out, DemoConfig(**DEMO_SIZES))
    return db


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    """A small demo catalog (the demo's code on 8 of the 18 concepts): every concept's circuit and
    every primitive × class ablation. The whole demo runs in the `slow` test below."""
    return _run_demo(tmp_path_factory.mktemp("demo"), DEMO_PRIMITIVES, DEMO_CLASSES)


def test_readme_has_at_least_six_questions():
    assert len(_questions()) >= 6


def test_every_readme_question_runs_on_the_demo_catalog(demo_db):
    from catalog.engine import open_catalog
    from catalog.sql import run_query

    cat = open_catalog(demo_db, read_only=True)
    for query in _questions():
        result = run_query(cat, query)
        assert result.columns, query
        assert result.rows, f"no rows from README query:\n{query}"


def _check_demo_output(db: str, concepts) -> None:
    from catalog.engine import close_catalogs_of, open_catalog
    from catalog.sql import run_query

    out = Path(db).parent
    report = (out / "report.md").read_text()
    for claim in ("composition", "reuse", "causality"):
        assert f"| {claim} |" in report
    assert (out / "overlap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cat = open_catalog(db, read_only=True)
    try:
        stored = run_query(cat, "select distinct concept from circuit_neurons_v").rows
    finally:
        close_catalogs_of(db)
    assert {row[0] for row in stored} == set(concepts)


def test_demo_report_and_heatmap_exist(demo_db):
    _check_demo_output(demo_db, DEMO_PRIMITIVES + DEMO_CLASSES)


@pytest.mark.slow
def test_the_whole_demo_stores_every_concept_and_reports(tmp_path):
    from ingest.datasets import catfish

    _check_demo_output(_run_demo(tmp_path), catfish.PRIMITIVES + catfish.CLASS_NAMES)


def test_every_command_has_help_and_is_in_the_reference():
    reference = README.split("## Command reference", 1)[1].split("\n## ", 1)[0]
    names = dict(_commands())
    assert {"ingest", "demo", "sql", "db init", "export", "apply", "train catfish"} <= set(names)
    for name, cmd in names.items():
        assert (cmd.help or "").strip(), f"`circuits {name}` has no help text"
        assert f"`circuits {name}" in reference, f"`circuits {name}` is missing from the README command reference"
        r = runner.invoke(app, [*name.split(), "--help"])
        assert r.exit_code == 0 and "Usage" in r.output, name


def _python_api_block() -> str:
    section = README.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section should hold one runnable code block"
    return blocks[0]


def test_python_api_workflow_runs(tmp_path, monkeypatch, capsys):
    """The notebook workflow: CLA on a model object the example builds, graph, mask applied to it."""
    from catalog.engine import close_all

    code = _python_api_block()
    for name in ("open_catalog", "ingest_concept(", "circuit_graph", "export_mask", "apply_mask", "model=model"):
        assert name in code, name
    assert "nn.Sequential(" in code  # the example builds the model object it passes
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(code, "README.md#python-api", "exec"), {"__name__": "readme"})
    finally:
        close_all()
    out = capsys.readouterr().out
    assert "neurons," in out and "pruned top-1" in out
    assert (tmp_path / "stripes-mask.json").exists() and len(list((tmp_path / "images/stripes").glob("*.png"))) == 6


def test_readme_points_nowhere_outside_the_repository():
    assert "../" not in README, "README links outside the repository (a user's clone has only this repo)"
    assert "DESIGN.md" not in README and "STYLE.md" not in README


def test_links_between_readme_and_docs_resolve():
    """Every relative Markdown link of the README and docs/ names a file (and heading) that exists."""
    root = Path(__file__).parent.parent
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
            path, anchor = target
            if path.startswith(("http://", "https://")):
                continue
            linked = (page.parent / path) if path else page
            assert linked.is_file(), f"{page.name} links to {path}, which does not exist"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.M)
                slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
                assert anchor in slugs, f"{page.name} links to {path}#{anchor}: no such heading"


def test_code_cites_only_headings_that_exist():
    """Code comments cite `docs/NAME.md, "Heading"`: every cited heading is in that document."""
    root = Path(__file__).parent.parent
    cited = set()
    for folder in ("catalog", "ingest", "queries", "circuits", "migrations", "tests", "bench"):
        for source in (root / folder).rglob("*.py"):
            cited |= set(re.findall(r'docs/([a-z_-]+\.md), "([^"]+)"', source.read_text(encoding="utf-8")))
    assert cited, "no citations found: the pattern is out of date"
    for doc, heading in sorted(cited):
        headings = re.findall(r"^#+ (.+)$", (root / "docs" / doc).read_text(), re.M)
        assert heading in headings, f'code cites docs/{doc}, "{heading}", which has no such heading'


def test_layout_section_names_every_top_level_folder():
    layout = README.split("## Layout", 1)[1].split("\n## ", 1)[0]
    root = Path(__file__).parent.parent
    folders = {
        p.name for p in root.iterdir() if (p.is_dir() and (p / "__init__.py").exists()) or p.name in ("tests", "bench")
    }
    for folder in folders:
        assert f"{folder}/" in layout, f"{folder}/ is missing from the README layout"
