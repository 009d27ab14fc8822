"""ViTs through the CLI: `--layers help`, `--tokens`, and the token models' bad input (one `error:`
line, exit 1, no catalog written)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from circuits.cli.main import app

runner = CliRunner()
TINY_VIT = Path(__file__).resolve().parent / "tiny_vit.py"


@pytest.fixture()
def user_vit(tmp_path: Path) -> str:
    shutil.copy(TINY_VIT, tmp_path / "tiny_vit.py")
    return f"{tmp_path / 'tiny_vit.py'}:build"


def test_layers_help_lists_heads_and_mlp_activations(user_vit):
    r = runner.invoke(app, ["ingest", user_vit, "--layers", "help"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split()[:3] == ["blocks.0.attn:heads", "attention", "heads"]
    assert "4 heads × 4" in lines[0]
    assert lines[1].split()[:4] == ["blocks.0.mlp.act", "mlp", "activation", "32"]


@pytest.mark.slow  # builds an 88M-parameter ViT-B/32
def test_layers_help_on_vit_b_32():
    r = runner.invoke(app, ["ingest", "vit-b-32", "--layers", "help"])
    assert r.exit_code == 0, r.output
    assert "encoder.layers.encoder_layer_11.self_attention:heads" in r.output and "12 heads × 64" in r.output
    assert "encoder.layers.encoder_layer_11.mlp.1" in r.output and "3072 neurons" in r.output


def test_models_lists_vit_heads_and_mlps():
    r = runner.invoke(app, ["models", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "encoder.layers.encoder_layer_0.self_attention:heads,encoder.layers.encoder_layer_0.mlp.1" in r.output


def test_user_vit_ingest_stores_token_selection(user_vit, tmp_path):
    db = tmp_path / "c.duckdb"
    argv = ["ingest", user_vit, "--concept", "stripes", "--dataset", "catfish:stripes", "--n", "3", "--k", "2"]
    r = runner.invoke(app, [*argv, "--tokens", "patches", "--db", str(db)])
    assert r.exit_code == 0, r.output
    from catalog import store
    from catalog.engine import open_catalog

    cat = open_catalog(db)
    with cat.session() as s:
        run = store.list_runs(s)[0]
        assert run.params["tokens"] == "patches"
        assert list(run.layer_names) == [
            "blocks.0.attn:heads",
            "blocks.0.mlp.act",
            "blocks.1.attn:heads",
            "blocks.1.mlp.act",
        ]
    cat.release()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layers", "blocks.0.mlp:heads,blocks.0.mlp.act"], "blocks.0.mlp (Mlp) is not an attention module"),
        (["--tokens", "middle"], "unknown token selection 'middle'"),
        (["--layers", "patch,blocks.0.mlp.act", "--tokens", "cls"], "not tokens (B, T, D)"),
        (["--input-size", "64", "--layers", "blocks.0.mlp.act,blocks.1.mlp.act"], "takes 16×16 images"),
    ],
)
def test_token_bad_input(user_vit, tmp_path, extra, message):
    db = tmp_path / "bad.duckdb"
    argv = ["ingest", user_vit, "--concept", "x", "--dataset", "catfish:stripes", "--n", "2", "--db", str(db)]
    r = runner.invoke(app, [*argv, *extra])
    assert r.exit_code == 1, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], r.output
    assert not db.exists()


@pytest.mark.slow  # builds an 88M-parameter ViT-B/32
def test_vit_image_size_error_names_the_size(tmp_path):
    db = tmp_path / "bad.duckdb"
    argv = ["ingest", "vit-b-32", "--concept", "x", "--dataset", "catfish:stripes", "--n", "1", "--db", str(db)]
    r = runner.invoke(app, [*argv, "--input-size", "64"])
    assert r.exit_code == 1, r.output
    assert "takes 224×224 images" in r.output and "--input-size 224" in r.output
    assert not db.exists()


FIVE_D = """
import torch.nn as nn

class Up(nn.Module):
    def forward(self, x):
        return x.unsqueeze(2)  # (B, C, 1, H, W)

class Down(nn.Module):
    def forward(self, x):
        return x.squeeze(2)

def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3), Up(), Down(), nn.Conv2d(4, 4, 3), nn.ReLU())
"""


def test_a_layer_that_is_neither_maps_nor_tokens(tmp_path):
    (tmp_path / "five.py").write_text(FIVE_D)
    db = tmp_path / "bad.duckdb"
    argv = ["ingest", f"{tmp_path / 'five.py'}:build", "--layers", "1,4", "--concept", "x"]
    r = runner.invoke(app, [*argv, "--dataset", "catfish:stripes", "--n", "2", "--db", str(db)])
    assert r.exit_code == 1, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "shape (1, 4, 1, 62, 62)" in errors[0], r.output
    assert not db.exists()
