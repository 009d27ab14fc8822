"""Every command the tool suggests runs as printed: `show`'s next step, `export`'s "bake it" line
and `prune-plan`'s ablate commands, in a user-model catalog (own weights file) and a catfish-mini
catalog (bundled weights, rendered images)."""

from __future__ import annotations

import re
import shlex

import bad_input_cases as bic
import pytest
import torch
from _helpers_cli import catfish_ingest_args, noise_images, tiny_ingest_args
from typer.testing import CliRunner

from circuits.cli.main import app

runner = CliRunner()
SUGGESTION = re.compile(r"(circuits (?:ablate|apply) [^\n]+)")


def _run(argv):
    r = runner.invoke(app, argv)
    assert r.exit_code == 0, (argv, r.output)
    return r.output


def _suggestions(output: str) -> list[list[str]]:
    return [shlex.split(m.split("  (", 1)[0])[1:] for m in SUGGESTION.findall(output)]


def _run_every_suggestion(db: str, model: str, concepts: tuple[str, str]) -> int:
    outputs = [
        _run(["show", concepts[0], "--db", db]),
        _run(["export", concepts[0], "-o", "m.json", "--db", db]),
        _run(["prune-plan", "--model", model, "--against", concepts[0], "--keep", concepts[1], "--db", db]),
    ]
    commands = [c for out in outputs for c in _suggestions(out)]
    assert {c[0] for c in commands} == {"ablate", "apply"}, outputs
    for argv in commands:
        r = runner.invoke(app, argv)
        assert r.exit_code == 0, (argv, r.output)
    return len(commands)


def test_suggestions_run_in_a_user_model_catalog(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.py").write_text(bic.TINY_MODEL)
    torch.save(_tiny_state(tmp_path), tmp_path / "w.pt")
    for seed, concept in enumerate(("noise", "static")):
        noise_images(tmp_path / concept, seed=seed)
        _run(tiny_ingest_args("tiny.py:build", concept, concept, "c.duckdb", "--weights", "w.pt"))
    assert _run_every_suggestion("c.duckdb", "tiny.py:build", ("noise", "static")) >= 3


def _tiny_state(root):
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_for_weights", root / "tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(1)  # not the zoo's random init: the weights only exist in w.pt
    return module.build().state_dict()


@pytest.mark.slow  # by default, catfish-mini's suggestions run in tests/test_suggested_commands.py
@pytest.mark.filterwarnings("ignore")
def test_suggestions_run_in_a_catfish_catalog(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for concept in ("stripes", "dots"):
        _run(catfish_ingest_args(concept, "c.duckdb", "--n", "8", "--k", "2"))
    assert _run_every_suggestion("c.duckdb", "catfish-mini", ("stripes", "dots")) >= 3


def test_user_model_suggestions_name_the_model_and_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.py").write_text(bic.TINY_MODEL)
    torch.save(_tiny_state(tmp_path), tmp_path / "w.pt")
    noise_images(tmp_path / "imgs")
    _run(tiny_ingest_args("tiny.py:build", "noise", "imgs", "c.duckdb", "--weights", "w.pt"))
    shown = _suggestions(_run(["show", "noise", "--db", "c.duckdb"]))
    baked = _suggestions(_run(["export", "noise", "-o", "m.json", "--db", "c.duckdb"]))
    weights = str((tmp_path / "w.pt").resolve())
    assert shown == [
        [
            "ablate",
            "1",
            "--kind",
            "circuit",
            "--images",
            str((tmp_path / "imgs").resolve()),
            "--model",
            "tiny.py:build",
            "--weights",
            weights,
            "--db",
            "c.duckdb",
        ]
    ]
    assert baked == [["apply", "tiny.py:build", "--mask", "m.json", "-o", "pruned.pt", "--weights", weights]]
