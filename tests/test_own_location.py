"""Resources are found by the package's own location, never by a generic top-level import name.

The working directory comes first on `sys.path` for scripts, notebooks and `python -m`; a project
folder with packages of its own named `migrations` (every Django project), `catalog`, `queries` or
`ingest` must not change what `db init`, `ingest` and `serve` load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DECOY = "raise ImportError('the working directory\\'s {name} package was imported')\n"
TINY = """
import torch.nn as nn

def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU())
"""


def _project(tmp_path: Path, *, packages: tuple[str, ...]) -> Path:
    """A working directory holding decoys: `packages` as regular packages that fail on import (a
    Django-style `migrations/` with a failing env.py), the others as plain folders."""
    home = tmp_path / "project"
    for name in ("migrations", "catalog", "queries", "ingest"):
        folder = home / name
        folder.mkdir(parents=True)
        if name in packages:
            (folder / "__init__.py").write_text(DECOY.format(name=name))
        else:
            (folder / "notes.txt").write_text("a folder of the user's project\n")
    (home / "migrations" / "env.py").write_text(DECOY.format(name="migrations/env.py"))
    (home / "migrations" / "versions").mkdir()
    (tmp_path / "tiny.py").write_text(TINY)
    return home


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CIRCUITS_DB")}
    env["PYTHONWARNINGS"] = "ignore"
    return env


@pytest.mark.parametrize("with_ingest", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_library_from_a_folder_with_its_own_migrations_package(tmp_path, with_ingest):
    """A script in a Django-style project: its `migrations` package comes first on sys.path.
    (Creating the catalog and serving it need no torch: fast; the ingest is the slow variant.)"""
    home = _project(tmp_path, packages=("migrations",))
    script = home / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, threading, urllib.request, sys
            from catalog import open_catalog
            from circuits.web.server import make_server

            assert sys.path[0] == {str(home)!r}  # the project folder is first, as for any script
            db = {str(tmp_path / "c.duckdb")!r}
            cat = open_catalog(db, create=True)
            circuit = None
            if {with_ingest!r}:
                from ingest.image_sets import resolve_images
                from ingest.pipeline import IngestConfig, ingest_concept

                model = {str(tmp_path / "tiny.py")!r} + ":build"
                circuit = ingest_concept(cat, IngestConfig(model=model, concept="stripes", layers=("1", "3"), k=2),
                                 resolve_images(dataset="catfish:stripes", n=2)).circuit_id
            cat.close()
            server = make_server(db, port=0, quiet=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            page = urllib.request.urlopen(server.url + "/", timeout=30).read().decode()
            server.shutdown()
            print(json.dumps({{"circuit": circuit, "page": ("stripes" in page) == {with_ingest!r}}}))
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)], cwd=home, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"circuit": 1 if with_ingest else None, "page": True}


@pytest.mark.slow
def test_cli_db_init_ingest_and_serve_from_a_folder_of_decoy_packages(tmp_path):
    """`python -m circuits` (working directory first on sys.path) and the `circuits` script, with
    regular packages named migrations, catalog, queries and ingest in the working directory."""
    home = _project(tmp_path, packages=("migrations", "catalog", "queries", "ingest"))
    db = str(tmp_path / "c.duckdb")
    circuits = Path(sys.executable).with_name("circuits")
    for argv in ([sys.executable, "-m", "circuits"], [str(circuits)]):

        def run(*args: str, argv=argv) -> subprocess.CompletedProcess:
            done = subprocess.run([*argv, *args], cwd=home, env=_env(), capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, (args, done.stderr[-3000:])
            return done

        Path(db).unlink(missing_ok=True)
        assert "created" in run("db", "init", "--db", db).stdout.lower() or Path(db).exists()
        model = f"{tmp_path / 'tiny.py'}:build"
        stored = run("ingest", model, "--concept", "stripes", "--dataset", "catfish:stripes", "--n", "2",
                     "--layers", "1,3", "--k", "2", "--db", db)  # fmt: skip
        assert "stored run 1" in stored.stdout
        server = subprocess.Popen(
            [*argv, "serve", "--port", "0", "--quiet", "--db", db],
            cwd=home, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            line = server.stdout.readline()
            assert "serving" in line, server.stderr.read()[-3000:] if server.poll() is not None else line
            url = line.split(" at ", 1)[1].split(" ", 1)[0]
            import urllib.request

            assert "stripes" in urllib.request.urlopen(url + "/", timeout=30).read().decode()
        finally:
            server.terminate()
            server.wait(timeout=30)
