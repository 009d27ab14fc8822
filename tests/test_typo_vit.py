"""typo-vit: the zoo entry, the shipped weights and their sidecar, and `circuits train typo-vit`."""

from __future__ import annotations

import json

import pytest
import torch
from _helpers_zoo import checked_sidecar
from typer.testing import CliRunner

from circuits.cli.main import app
from ingest import zoo
from ingest.cla.heads import is_head_layer, read_heads
from ingest.datasets.catfish import CLASS_NAMES
from ingest.train import TYPO_VIT_DEFAULTS, TrainConfig, reproduce_command
from ingest.zoo.typo_vit import WEIGHTS_PATH, build_typo_vit

MAX_BYTES = 15 * 1024**2


def test_architecture_and_layers():
    spec = zoo.get_spec("typo-vit")
    assert spec.input_size == 64 and tuple(spec.labels) == tuple(CLASS_NAMES)
    model = build_typo_vit().eval()
    heads = [name for name in spec.layers if is_head_layer(name)]
    assert len(heads) == 6 and len(spec.layers) == 12
    r = read_heads(model, heads[0])
    assert (r.num_heads, r.head_dim) == (4, 24)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, len(CLASS_NAMES))


def test_shipped_weights_match_their_sidecar():
    if not WEIGHTS_PATH.exists():
        pytest.skip("typo-vit's weights are not in this checkout")
    assert WEIGHTS_PATH.stat().st_size <= MAX_BYTES
    meta, loaded = checked_sidecar("typo-vit", WEIGHTS_PATH, "circuits train typo-vit ")
    assert meta["layers"] == list(loaded.spec.layers)


def test_reproduce_command_names_typo_vit(tmp_path):
    cfg = TrainConfig(**{**TYPO_VIT_DEFAULTS, "epochs": 3})
    cmd = reproduce_command(cfg, tmp_path / "w.pt", torch.device("cpu"))
    assert cmd.startswith("circuits train typo-vit --epochs 3 --seed 0 ")
    assert "--batch-size" not in cmd and "--text-share" not in cmd  # typo-vit's own defaults


def test_train_typo_vit_cli_writes_weights_and_sidecar(tmp_path):
    out = tmp_path / "v.pt"
    argv = ["train", "typo-vit", "--epochs", "1", "--train-per-class", "2", "--eval-per-class", "1"]
    r = CliRunner().invoke(app, [*argv, "--out", str(out), "--device", "cpu", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "attack success:" in r.output and "time:" in r.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["model"] == "typo-vit" and meta["config"]["model"] == "typo-vit"
    loaded = zoo.load_model("typo-vit", weights=out)
    assert loaded.weights_sha256 == meta["state_dict_sha256"]


def test_train_typo_writes_each_model_to_its_own_bundled_file_by_default():
    """`train_typo` trains typo-mini or typo-vit by `config.model`; with no `out` each goes to its
    shipped file, as `circuits train typo|typo-vit` does; anything else is refused."""
    from ingest.train import TYPO_DEFAULTS, TrainingError, default_weights, train_typo
    from ingest.zoo.catfish_mini import WEIGHTS_PATH as CATFISH_WEIGHTS
    from ingest.zoo.typo_mini import WEIGHTS_PATH as TYPO_WEIGHTS

    assert default_weights(TrainConfig(**TYPO_VIT_DEFAULTS)) == WEIGHTS_PATH
    assert default_weights(TrainConfig(**TYPO_DEFAULTS)) == TYPO_WEIGHTS
    assert default_weights(TrainConfig()) == CATFISH_WEIGHTS
    with pytest.raises(TrainingError, match="dataset='typo'"):
        train_typo(TrainConfig())
