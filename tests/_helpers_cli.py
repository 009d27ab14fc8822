"""Set-ups the command-line tests share: a folder of random-noise images and the argument list of
`circuits ingest` for the tiny user model (`tests/tiny_model.py`, layers 1,3,5) and for
catfish-mini on a rendered concept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def noise_images(folder: Path, n: int = 4, size: int = 16, seed: int = 0) -> Path:
    """`folder` (made here) holding `n` random RGB PNGs of `size` pixels, 0.png … (n-1).png."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def tiny_ingest_args(
    model: str = "tiny.py:build", concept: str = "noise", images: str = "imgs", db: str = "c.duckdb", *extra: str
) -> list[str]:
    """`circuits ingest` of the tiny user model, k = 2 over its three ReLU outputs (widths 6, 8, 5)."""
    return [
        "ingest",
        model,
        "--concept",
        concept,
        "--images",
        images,
        "--layers",
        "1,3,5",
        "--k",
        "2",
        "--db",
        db,
        *extra,
    ]


def catfish_ingest_args(concept: str, db: str, *extra: str) -> list[str]:
    """`circuits ingest catfish-mini` of the rendered `catfish:CONCEPT` set."""
    return ["ingest", "catfish-mini", "--concept", concept, "--dataset", f"catfish:{concept}", "--db", db, *extra]


def tiny_catalog(folder: Path, n_images: int = 4) -> dict[str, Any]:
    """`folder` holding `tiny.py`, `n_images` noise images in `imgs/` and `c.duckdb` with one run of
    the tiny model over them, ingested through the CLI (`tiny_ingest_args`).

    Returns:
        db (Path), model (`PATH:build`), images (Path), args (the ingest's arguments), dir (`folder`).
    """
    from tiny_model import TINY_MODEL
    from typer.testing import CliRunner

    from circuits.cli.main import app

    (folder / "tiny.py").write_text(TINY_MODEL)
    images = noise_images(folder / "imgs", n_images)
    db, model = folder / "c.duckdb", f"{folder / 'tiny.py'}:build"
    args = tiny_ingest_args(model, "noise", str(images), str(db))
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return {"db": db, "model": model, "images": images, "args": args, "dir": folder}


def sql_rows(db: str | Path, query: str) -> list[dict[str, Any]]:
    """The rows of `circuits sql QUERY --db DB --format json` (asserting it succeeds)."""
    from typer.testing import CliRunner

    from circuits.cli.main import app

    r = CliRunner().invoke(app, ["sql", query, "--db", str(db), "--format", "json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


# The start of a script run in a fresh interpreter that must not see this project (a deployed
# model is loaded with torch alone): importing any of its packages there raises.
BLOCK_PROJECT = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("catalog", "ingest", "queries", "circuits"):
            raise ImportError("the project is not installed here: " + name)
sys.meta_path.insert(0, Block())
"""
