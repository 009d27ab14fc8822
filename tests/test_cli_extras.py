"""Without an optional extra, read commands still work and model commands say which extra to install.

The commands run in one fresh interpreter in which every extra's modules are blocked
(`sys.modules[name] = None` makes `import name` raise ModuleNotFoundError, exactly as in a base
install), through Typer's CliRunner. The clean-venv version of this check is in
`test_packaging.py` (slow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_queries_toy import build_toy

from circuits.cli.extras import missing_extra_message

ROOT = Path(__file__).parent.parent
BLOCKED = ("torch", "torchvision", "PIL", "matplotlib", "psycopg", "jinja2")


def run_blocked(commands: list[list[str]], block: tuple[str, ...] = BLOCKED) -> list[dict]:
    """Run `circuits` commands in one interpreter with `block` unimportable; exit code and output of each."""
    code = f"""
import json, sys
for name in {list(block)!r}:
    sys.modules[name] = None
from typer.testing import CliRunner
from circuits.cli.main import app
results = []
for args in {commands!r}:
    r = CliRunner().invoke(app, args)
    results.append({{"code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr,
                     "exception": None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)}})
results.append({{"loaded": [n for n in {list(block)!r} if sys.modules.get(n) is not None]}})
print(json.dumps(results))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    *results, loaded = json.loads(r.stdout.splitlines()[-1])
    assert loaded == {"loaded": []}
    return results


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return build_toy(str(tmp_path_factory.mktemp("extras") / "toy.duckdb"))


def test_message_names_the_extra_and_the_pip_command():
    exc = ModuleNotFoundError("No module named 'torch'", name="torch")
    assert missing_extra_message("ingest", exc) == (
        "circuits ingest needs the [ingest] extra: pip install 'visual-circuit-catalog[ingest]'"
    )
    assert missing_extra_message("x", ModuleNotFoundError("no", name="matplotlib.pyplot")).startswith(
        "circuits x needs the [plots] extra"
    )
    assert missing_extra_message("x", ModuleNotFoundError("no", name="numpy")) is None


def test_base_commands_work_and_the_others_name_their_extra(toy, tmp_path):
    """With torch, pillow, matplotlib, psycopg and jinja2 all missing: the read side and export
    work; ingest/ablate, --plot, a PostgreSQL catalog and the web report each say which extra to
    install, in one line."""
    db = ["--db", toy.path]
    works = [
        ["sql", "select count(*) as n from circuit", *db, "--format", "json"],
        ["list", "circuits", *db],
        ["show", "star", "--model", "toy", *db],
        ["overlap", "--model", "toy", *db],
        ["export", "star", "--model", "toy", "-o", str(tmp_path / "star.json"), *db],
        ["export", "star", "--model", "toy", "-o", str(tmp_path / "star.safetensors"), *db],
        ["db", "init", "--db", str(tmp_path / "new.duckdb")],
    ]
    needs = [
        ("ingest", ["ingest", "catfish-mini", "--concept", "stripes", "--dataset", "catfish:stripes", *db]),
        ("ingest", ["ablate", "1", "--dataset", "catfish:stripes", *db]),
        ("plots", ["overlap", "--model", "toy", "--plot", str(tmp_path / "o.png"), *db]),
        ("postgres", ["sql", "select 1", "--db", "postgresql://nobody@127.0.0.1:1/none"]),
        ("serve", ["report", "star", "--model", "toy", "-o", str(tmp_path / "star.html"), *db]),
    ]
    results = run_blocked(works + [args for _, args in needs])
    for args, r in zip(works, results):
        assert r["code"] == 0 and r["exception"] is None, (args, r)
    assert json.loads(results[0]["stdout"])[0]["n"] > 0
    assert "star" in results[1]["stdout"] and "concept star on toy" in results[2]["stdout"]
    assert (tmp_path / "star.json").stat().st_size > 0 and (tmp_path / "star.safetensors").stat().st_size > 0
    for (extra, args), r in zip(needs, results[len(works) :]):
        assert r["code"] == 1, (args, r)
        assert r["stderr"].strip() == (
            f"error: circuits {args[0]} needs the [{extra}] extra: pip install 'visual-circuit-catalog[{extra}]'"
        ), (args, r)


def test_an_unrelated_missing_module_keeps_its_traceback(toy):
    """Only the extras' modules are turned into the message: a broken install stays a traceback."""
    [r] = run_blocked([["list", "circuits", "--db", toy.path]], block=("sqlalchemy",))
    assert r["code"] == 1 and "ModuleNotFoundError" in (r["exception"] or "") and "sqlalchemy" in r["exception"]
