"""Every row of the bad-input table (docs/bad-input.md): exit 1, one `error:` line on stderr, nothing written.

The cases are `tests/bad_input_cases.py`; each runs in-process (CliRunner) in a fresh copy of a
small world (one run of a tiny user model), with the working directory at the copy. After the
command the catalog file is byte-identical and no file or folder has appeared.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import bad_input_cases as bic
import pytest
from _helpers_cli import noise_images, tiny_ingest_args
from typer.testing import CliRunner

from circuits.cli.main import app

runner = CliRunner()
TABLE_DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A catalog with one run of the tiny model, its images, weights and an exported mask."""
    import torch

    root = tmp_path_factory.mktemp("world")
    (root / "tiny.py").write_text(bic.TINY_MODEL)
    noise_images(root / "imgs")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        from ingest.zoo import load_model

        with pytest.warns(Warning):
            torch.save(load_model("tiny.py:build", layers=["1", "3"]).module.state_dict(), root / "w.pt")
        r = runner.invoke(app, tiny_ingest_args("tiny.py:build", "noise", "imgs", "c.duckdb", "--weights", "w.pt"))
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["export", "noise", "-o", "m.json", "--db", "c.duckdb"])
        assert r.exit_code == 0, r.output
    finally:
        os.chdir(cwd)
    from catalog.engine import close_all

    close_all()
    return {"root": root, "ids": _ids(root)}


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = (
            "dir"
            if p.is_dir()
            else hashlib.sha256(p.read_bytes()).hexdigest()
            if p.stat().st_size < 1 << 20
            else str(p.stat().st_size)
        )
    return out


def _ids(root: Path) -> dict[str, str]:
    from catalog.sql import run_sql

    cid = run_sql(str(root / "c.duckdb"), "select max(id) from circuit").rows[0][0]
    rid = run_sql(str(root / "c.duckdb"), "select max(id) from run").rows[0][0]
    return {"cid": str(cid), "rid": str(rid)}


@pytest.mark.parametrize("case", bic.CASES, ids=[c.id for c in bic.CASES])
def test_bad_input_is_one_error_line_and_writes_nothing(case, world, tmp_path, monkeypatch):
    if case.needs_no_gpu:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is available here")
    root = tmp_path / "w"
    shutil.copytree(world["root"], root)
    monkeypatch.chdir(root)
    if case.prep:
        getattr(bic, case.prep)(root)
    values = {
        "db": "c.duckdb",
        "model": "tiny.py:build",
        "imgs": "imgs",
        "weights": "w.pt",
        "mask": "m.json",
        **world["ids"],  # the copy's ids are the world's (read once: each read costs a sandboxed open)
    }
    from catalog.engine import close_all

    close_all()
    before = _tree(root)
    argv = list(case.argv)
    for k, v in values.items():
        argv = [a.replace("{" + k + "}", v) for a in argv]
    r = runner.invoke(app, argv)
    close_all()
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.exit_code == 1, (case.id, r.exit_code, r.output, r.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), (case.id, r.stderr, r.stdout, repr(r.exception))
    assert case.expect.lower() in lines[0].lower(), (case.id, lines[0])
    after = _tree(root)
    assert after == before, (
        case.id,
        sorted(set(after) ^ set(before)),
        [k for k in before if after.get(k) != before[k]],
    )


def test_doc_table_is_the_case_list():
    text = TABLE_DOC.read_text()
    assert bic.README_START in text and bic.README_END in text, "docs/bad-input.md lacks the table markers"
    table = text.split(bic.README_START, 1)[1].split(bic.README_END, 1)[0].strip()
    assert table == bic.readme_table(), "docs/bad-input.md's table differs: paste bad_input_cases.readme_table()"
    assert len(bic.CASES) >= 40
