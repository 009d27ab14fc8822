"""A catalog never makes you run its author's code: stored user-model specs are shown, not imported."""

from __future__ import annotations

import bad_input_cases as bic
import pytest
from _helpers_cli import noise_images, tiny_ingest_args
from typer.testing import CliRunner

from circuits.cli.main import app

runner = CliRunner()
EVIL = "from pathlib import Path\nPath(__file__).with_name('PWNED').write_text('ran')\n" + bic.TINY_MODEL


@pytest.fixture()
def shared(tmp_path, monkeypatch):
    """A catalog made in folder `author/` from `evil.py:build`, opened by a user in folder `user/`
    that holds an `evil.py` which writes a marker file when imported."""
    author, user = tmp_path / "author", tmp_path / "user"
    author.mkdir(), user.mkdir()
    (author / "evil.py").write_text(bic.TINY_MODEL)
    (user / "evil.py").write_text(EVIL)
    (user / "mine.py").write_text(bic.TINY_MODEL)  # the user's own copy of the architecture
    (user / "wider.py").write_text(
        bic.TINY_MODEL.replace("nn.Conv2d(3, 6", "nn.Conv2d(3, 7").replace("nn.Conv2d(6, 8", "nn.Conv2d(7, 8")
    )
    imgs = noise_images(author / "imgs")
    monkeypatch.chdir(author)
    r = runner.invoke(app, tiny_ingest_args("evil.py:build"))
    assert r.exit_code == 0, r.output
    monkeypatch.chdir(user)
    return {"db": str(author / "c.duckdb"), "imgs": str(imgs), "user": user}


def test_ablate_never_imports_the_stored_spec(shared):
    r = runner.invoke(app, ["ablate", "noise", "--images", shared["imgs"], "--db", shared["db"]])
    assert r.exit_code == 1
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "evil.py:build" in r.stderr and "--model" in r.stderr  # the stored spec is shown
    assert not (shared["user"] / "PWNED").exists()


def test_ablate_runs_the_model_the_user_names(shared):
    r = runner.invoke(
        app, ["ablate", "noise", "--model", "mine.py:build", "--images", shared["imgs"], "--db", shared["db"]]
    )
    assert r.exit_code == 0, r.output
    assert "circuit pruning of circuit" in r.stdout
    assert not (shared["user"] / "PWNED").exists()


def test_a_named_model_with_other_weights_is_refused(shared):
    r = runner.invoke(
        app, ["ablate", "noise", "--model", "wider.py:build", "--images", shared["imgs"], "--db", shared["db"]]
    )
    assert r.exit_code == 1 and r.stderr.startswith("error: "), r.output
    assert not (shared["user"] / "PWNED").exists()
