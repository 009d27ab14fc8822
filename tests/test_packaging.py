"""A normal (non-editable) install carries the migrations and the bundled weights."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_wheel_install_can_init_and_upgrade_a_catalog(tmp_path):
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True)
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), *map(str, wheels.glob("*.whl"))],
                   check=True, capture_output=True)
    assert (target / "migrations/versions/0001_initial.py").exists()
    assert (target / "ingest/weights/catfish_mini.pt").exists()
    assert (target / "circuits/web/templates/circuit.html").exists() and (target / "circuits/web/static/style.css").exists()
    # Run from outside the source tree: only the installed copy (plus the venv's dependencies) is importable.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])}
    db = tmp_path / "c.duckdb"
    cli = [sys.executable, "-c", "from circuits.cli.main import main; main()"]
    for args in (["db", "init", "--db", str(db)], ["db", "upgrade", "--db", str(db)], ["db", "status", "--db", str(db)]):
        r = subprocess.run([*cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    from catalog.migrate import SCHEMA_HEAD

    assert f"current:  {SCHEMA_HEAD}" in r.stdout
    where = subprocess.run([sys.executable, "-c", "import catalog; print(catalog.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(target))
