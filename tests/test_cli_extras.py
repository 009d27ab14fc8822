"""Without an optional extra, read commands still work and model commands say which extra to install.

Each case runs the real `circuits` entry point in a subprocess in which the extra's modules are
blocked (`sys.modules[name] = None` makes `import name` raise ModuleNotFoundError, exactly as in a
base install). The clean-venv version of this check is `test_packaging.py` (slow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from circuits.cli.extras import missing_extra_message
from test_queries_toy import build_toy

ROOT = Path(__file__).parent.parent
BLOCK = {"ingest": ("torch", "torchvision", "PIL"), "plots": ("matplotlib",), "postgres": ("psycopg",)}


def circuits(*args: str, block: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        f"for name in {list(block)!r}: sys.modules[name] = None\n"
        "from circuits.cli.main import main\n"
        f"sys.argv = ['circuits', *{list(args)!r}]\n"
        "main()\n"
        f"assert not any(sys.modules.get(n) for n in {list(block)!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return build_toy(str(tmp_path_factory.mktemp("extras") / "toy.duckdb"))


def test_message_names_the_extra_and_the_pip_command():
    exc = ModuleNotFoundError("No module named 'torch'", name="torch")
    assert missing_extra_message("ingest", exc) == (
        "circuits ingest needs the [ingest] extra: pip install 'visual-circuit-catalog[ingest]'"
    )
    assert missing_extra_message("x", ModuleNotFoundError("no", name="matplotlib.pyplot")).startswith(
        "circuits x needs the [plots] extra")
    assert missing_extra_message("x", ModuleNotFoundError("no", name="numpy")) is None


def test_read_commands_and_export_need_no_extra(toy, tmp_path):
    """The base install's commands, with torch, matplotlib and psycopg all missing."""
    block = tuple(m for mods in BLOCK.values() for m in mods)
    r = circuits("sql", "select count(*) as n from circuit", "--db", toy.path, "--format", "json", block=block)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["n"] > 0
    r = circuits("list", "circuits", "--db", toy.path, block=block)
    assert r.returncode == 0 and "star" in r.stdout, r.stderr
    r = circuits("show", "star", "--model", "toy", "--db", toy.path, block=block)
    assert r.returncode == 0 and "concept star on toy" in r.stdout, r.stderr
    r = circuits("overlap", "--model", "toy", "--db", toy.path, block=block)
    assert r.returncode == 0, r.stderr
    for suffix in ("json", "safetensors"):
        out = tmp_path / f"star.{suffix}"
        r = circuits("export", "star", "--model", "toy", "-o", str(out), "--db", toy.path, block=block)
        assert r.returncode == 0, r.stderr
        assert out.stat().st_size > 0
    r = circuits("db", "init", "--db", str(tmp_path / "new.duckdb"), block=block)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("extra", "args"),
    [
        ("ingest", ("ingest", "catfish-mini", "--concept", "stripes", "--dataset", "catfish:stripes")),
        ("ingest", ("ablate", "1", "--dataset", "catfish:stripes")),
        ("plots", ("overlap", "--model", "toy", "--plot", "PLOT")),
        ("postgres", ("sql", "select 1", "--db", "postgresql://nobody@127.0.0.1:1/none")),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(toy, tmp_path, extra, args):
    args = tuple(str(tmp_path / "o.png") if a == "PLOT" else a for a in args)
    if "--db" not in args:
        args = (*args, "--db", toy.path)
    r = circuits(*args, block=BLOCK[extra])
    assert r.returncode == 1, (r.stdout, r.stderr)
    command = args[0]
    assert r.stderr.strip() == (
        f"error: circuits {command} needs the [{extra}] extra: pip install 'visual-circuit-catalog[{extra}]'"
    ), r.stderr


def test_an_unrelated_missing_module_keeps_its_traceback(toy):
    r = circuits("list", "circuits", "--db", toy.path, block=("sqlalchemy",))
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "sqlalchemy" in r.stderr
