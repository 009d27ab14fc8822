"""typo-mini: the shipped weights (sidecar, zoo entry, it reads) and `circuits train typo`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _helpers_zoo import checked_sidecar
from typer.testing import CliRunner

from circuits.cli.main import app
from ingest import zoo
from ingest.datasets.catfish import CLASS_NAMES
from ingest.datasets.typo import render_typo
from ingest.defence.attack_eval import predict
from ingest.train import TYPO_DEFAULTS, TrainConfig, TrainingError, reproduce_command
from ingest.zoo.typo_mini import WEIGHTS_PATH


def test_shipped_weights_match_their_sidecar():
    meta, _ = checked_sidecar("typo-mini", WEIGHTS_PATH, "circuits train typo ")
    # the targets typo-mini was trained to (docs/results.md, "Typographic defence")
    assert meta["heldout_accuracy"] >= 0.97 and meta["attack_success"] >= 0.80
    assert "typo-mini" in zoo.available_models()


def test_typo_mini_reads_and_sees():
    """On fresh images (a seed training never used): clean images right, attacks read as written."""
    loaded = zoo.load_model("typo-mini")
    clean = render_typo("typo:clean", 96, seed=12345)
    attack = render_typo("typo:attack", 96, seed=12345)
    pc = predict(loaded.module, zoo.preprocess(loaded.spec, clean.images), device="cpu").argmax(1).numpy()
    pa = predict(loaded.module, zoo.preprocess(loaded.spec, attack.images), device="cpu").argmax(1).numpy()
    assert (pc == clean.labels).mean() >= 0.93
    assert (pa == attack.written).mean() >= 0.70
    catfish = zoo.load_model("catfish-mini")  # the same network never taught to read ignores text
    pf = predict(catfish.module, zoo.preprocess(catfish.spec, attack.images), device="cpu").argmax(1).numpy()
    assert (pf == attack.written).mean() < 0.25


def test_train_typo_cli_writes_weights_and_sidecar(tmp_path):
    out = tmp_path / "t.pt"
    r = CliRunner().invoke(
        app,
        [
            "train",
            "typo",
            "--epochs",
            "1",
            "--train-per-class",
            "2",
            "--eval-per-class",
            "1",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--threads",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "attack success:" in r.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["model"] == "typo-mini" and 0.0 <= meta["attack_success"] <= 1.0
    assert meta["attack_images"] == len(CLASS_NAMES)
    assert meta["command"].startswith("circuits train typo --epochs 1 --seed 0 --train-per-class 2")
    state = torch.load(out, weights_only=True)
    model = zoo.get_spec("typo-mini").build()
    model.load_state_dict(state)


def test_reproduce_command_and_bad_settings(tmp_path):
    cfg = TrainConfig(**{**TYPO_DEFAULTS, "text_share": 0.3})
    cmd = reproduce_command(cfg, tmp_path / "x.pt", torch.device("cpu"))
    assert "circuits train typo --epochs 12" in cmd and "--text-share 0.3" in cmd and "--text-only-share" not in cmd
    with pytest.raises(TrainingError, match="`text_share=`"):
        TrainConfig(dataset="typo", text_share=0.9, text_only_share=0.2).validate()
    with pytest.raises(TrainingError, match="dataset"):
        TrainConfig(dataset="imagenet").validate()
    r = CliRunner().invoke(app, ["train", "typo", "--text-share", "-1", "--out", str(tmp_path / "y.pt")])
    assert r.exit_code == 1 and r.output.strip().startswith("error:") and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "y.pt").exists()
    assert np.isfinite(cfg.lr)
