"""Installed copies work: a wheel carries the migrations and the bundled weights, and the base
install (no extras, a clean venv: slow) reads, exports and names the extra a model command needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from _helpers_cli import catfish_ingest_args

ROOT = Path(__file__).parent.parent


@pytest.mark.slow  # builds a wheel (~15 s); the clean-venv test below checks the same and more
def test_wheel_install_can_init_and_upgrade_a_catalog(tmp_path):
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    target = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), *map(str, wheels.glob("*.whl"))],
        check=True,
        capture_output=True,
    )
    assert (target / "migrations/versions/0001_initial.py").exists()
    assert (target / "ingest/weights/catfish_mini.pt").exists()
    assert (target / "circuits/web/templates/circuit.html").exists() and (
        target / "circuits/web/static/style.css"
    ).exists()
    # Run from outside the source tree: only the installed copy (plus the venv's dependencies) is importable.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])}
    db = tmp_path / "c.duckdb"
    cli = [sys.executable, "-c", "from circuits.cli.main import main; main()"]
    for args in (
        ["db", "init", "--db", str(db)],
        ["db", "upgrade", "--db", str(db)],
        ["db", "status", "--db", str(db)],
    ):
        r = subprocess.run([*cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    from catalog.revision import SCHEMA_HEAD

    assert f"current:  {SCHEMA_HEAD}" in r.stdout
    where = subprocess.run(
        [sys.executable, "-c", "import catalog; print(catalog.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(target))


@pytest.mark.slow
def test_clean_venv_base_install_reads_exports_and_names_the_ingest_extra(tmp_path):
    """`pip install` the wheel with no extras into a fresh venv: no torch, and the read side works.

    Builds the toy catalog of the query tests in this process, then runs the installed `circuits`
    (from outside the source tree): `db init`, `sql`, `list`, `export` succeed; `ingest` prints the
    one-line message naming the [ingest] extra. Needs the package index (pinned by constraints.txt).
    """
    from test_queries_toy import build_toy

    from catalog.engine import close_all

    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    # Nothing of the source tree or the test environment may leak in: with PYTHONPATH set, pip
    # would take the build's egg-info in the source tree for an installed copy and skip the wheel.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CIRCUITS_DB", "VIRTUAL_ENV")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, env=env)
    pip = subprocess.run(
        [
            str(venv / "bin/python"),
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            str(ROOT / "constraints.txt"),
            *map(str, wheels.glob("*.whl")),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert pip.returncode == 0, pip.stderr
    assert (venv / "bin/circuits").exists(), "the wheel did not install the `circuits` command"
    python = str(venv / "bin/python")
    probe = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util as u; print([m for m in ('torch', 'torchvision', "
            "'matplotlib', 'psycopg', 'PIL') if u.find_spec(m)])",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]", "the base install pulled in an extra"

    toy = build_toy(str(tmp_path / "toy.duckdb"))
    close_all()
    cli = str(venv / "bin/circuits")

    def circuits(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True)

    site = subprocess.run(
        [python, "-c", "import catalog, pathlib; print(pathlib.Path(catalog.__file__).parent.parent)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert site.startswith(str(venv)), site
    assert (Path(site) / "migrations/versions/0001_initial.py").exists()
    assert (Path(site) / "ingest/weights/catfish_mini.pt").exists()
    for args in (["db", "init"], ["db", "upgrade"], ["db", "status"]):
        r = circuits(*args, "--db", str(tmp_path / "new.duckdb"))
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    assert "state:    up to date" in r.stdout, r.stdout
    r = circuits("sql", "select count(*) as n from circuit", "--db", toy.path, "--format", "csv")
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "n" and int(r.stdout.splitlines()[1]) > 0, r.stderr
    r = circuits("list", "circuits", "--db", toy.path)
    assert r.returncode == 0 and "star" in r.stdout, r.stderr
    for suffix in ("json", "safetensors"):
        r = circuits("export", "star", "--model", "toy", "-o", str(tmp_path / f"star.{suffix}"), "--db", toy.path)
        assert r.returncode == 0 and (tmp_path / f"star.{suffix}").stat().st_size > 0, r.stderr
    r = circuits(*catfish_ingest_args("stripes", str(tmp_path / "new.duckdb")))
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "error: circuits ingest needs the [ingest] extra: pip install 'visual-circuit-catalog[ingest]'"
    ), r.stderr
