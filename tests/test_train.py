"""catfish-mini: layout, shipped weights, and the `circuits train catfish` command."""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from circuits.cli.main import app
from ingest.datasets.catfish import CLASS_NAMES, IMAGE_SIZE, make_split
from ingest.train import (
    TrainConfig,
    TrainingError,
    evaluate,
    resolve_device,
    train_catfish,
)
from ingest.zoo.catfish_mini import (
    CATFISH_MINI_LAYERS,
    CATFISH_MINI_LOGITS,
    INPUT_SIZE,
    WEIGHTS_PATH,
    BasicConv2d,
    Inception,
    build_catfish_mini,
    preprocess,
)
from ingest.zoo.registry import weights_sha256

SIDECAR = WEIGHTS_PATH.with_suffix(".json")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_catfish_mini().eval()


def _layer_outputs(model, x):
    """Outputs of every named layer, in the order the forward pass produced them."""
    seen = []
    handles = [
        model.get_submodule(name).register_forward_hook(lambda mod, inp, out, name=name: seen.append((name, out)))
        for name in (*CATFISH_MINI_LAYERS, CATFISH_MINI_LOGITS)
    ]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, seen


def test_forward_shape_and_layers_in_forward_order(model):
    x = torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE)
    logits, seen = _layer_outputs(model, x)
    assert logits.shape == (2, len(CLASS_NAMES))
    assert [name for name, _ in seen] == [*CATFISH_MINI_LAYERS, CATFISH_MINI_LOGITS]
    for name, out in seen[:-1]:
        assert out.ndim == 4 and out.shape[0] == 2, name
        assert 32 <= out.shape[1] <= 256, f"{name} has {out.shape[1]} channels"
    assert INPUT_SIZE == IMAGE_SIZE


def test_each_layer_is_computed_from_the_previous_one_alone(model):
    """Feeding a layer's output through the modules between it and the next reproduces the next."""
    x = torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE)
    with torch.no_grad():
        _, seen = _layer_outputs(model, x)
        out = dict(seen)
        assert torch.equal(model.stem(x), out["stem"])
        assert torch.equal(model.mixed3a(out["stem"]), out["mixed3a"])
        assert torch.equal(model.mixed3b(out["mixed3a"]), out["mixed3b"])
        assert torch.equal(model.mixed4a(model.pool3(out["mixed3b"])), out["mixed4a"])
        assert torch.equal(model.mixed4b(out["mixed4a"]), out["mixed4b"])


def test_inception_blocks_use_torchvision_naming(model):
    blocks = [model.get_submodule(name) for name in CATFISH_MINI_LAYERS[1:]]
    assert len(blocks) >= 3 and all(isinstance(b, Inception) for b in blocks)
    for block in blocks:
        assert isinstance(block.branch1, BasicConv2d)
        assert block.branch2[1].conv.kernel_size == (3, 3)
        assert block.branch3[1].conv.kernel_size == (5, 5)
        assert isinstance(block.branch4[0], nn.MaxPool2d) and isinstance(block.branch4[1], BasicConv2d)
    for mod in model.modules():
        if isinstance(mod, BasicConv2d):
            assert mod.conv.bias is None and isinstance(mod.bn, nn.BatchNorm2d)
            assert isinstance(mod.relu, nn.ReLU) and not mod.relu.inplace


def test_block_output_is_the_concat_of_its_branches(model):
    block = model.mixed3b
    x = torch.randn(1, 64, 16, 16)
    with torch.no_grad():
        ref = torch.cat([block.branch1(x), block.branch2(x), block.branch3(x), block.branch4(x)], 1)
        assert torch.equal(block(x), ref)
        assert ref.shape[1] == block.out_channels


def test_preprocess_layout_and_normalisation():
    imgs = make_split(1, seed=0)[0][:3]  # (3, H, W, 3) uint8
    x = preprocess(imgs)
    assert x.shape == (3, 3, IMAGE_SIZE, IMAGE_SIZE) and x.dtype == torch.float32
    ref = (torch.tensor(imgs[1, 5, 7, 2] / 255.0) - 0.5) / 0.25  # pixel (5, 7), blue channel
    assert torch.isclose(x[1, 2, 5, 7], ref.float())
    from ingest.zoo.registry import get_spec
    from ingest.zoo.registry import preprocess as zoo_preprocess

    # training saw exactly what the zoo feeds the model at ingest time
    assert torch.allclose(x, zoo_preprocess(get_spec("catfish-mini"), imgs), atol=1e-6)


def test_shipped_weights_load_and_classify_fresh_images():
    assert WEIGHTS_PATH.exists(), "run `circuits train catfish` to produce the shipped weights"
    assert WEIGHTS_PATH.stat().st_size < 4_000_000
    state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
    model = build_catfish_mini()
    model.load_state_dict(state)  # strict: every key matches
    images, labels = make_split(8, seed=987_654)  # 96 images of a seed training never used
    accuracy = evaluate(model, images, labels)
    assert accuracy >= 0.9, f"held-out accuracy {accuracy:.3f}"

    meta = json.loads(SIDECAR.read_text())
    assert meta["file_sha256"] == hashlib.sha256(WEIGHTS_PATH.read_bytes()).hexdigest()
    assert meta["state_dict_sha256"] == weights_sha256(model)  # the identity the catalog stores
    assert meta["class_names"] == list(CLASS_NAMES)
    assert meta["layers"] == list(CATFISH_MINI_LAYERS)
    assert meta["heldout_accuracy"] >= 0.95
    assert meta["command"].startswith("circuits train catfish ")
    assert f"--epochs {meta['epochs']}" in meta["command"] and f"--seed {meta['seed']}" in meta["command"]


def test_cli_defaults_match_the_train_config():
    from circuits.cli.train import train_catfish_command

    params = inspect.signature(train_catfish_command).parameters
    defaults = TrainConfig()
    for name in ("epochs", "seed", "device", "train_per_class", "eval_per_class", "batch_size", "threads"):
        assert params[name].default == getattr(defaults, name), name


def test_train_command_runs_a_tiny_epoch(tmp_path: Path):
    out = tmp_path / "w" / "tiny.pt"
    args = [
        "train",
        "catfish",
        "--epochs",
        "1",
        "--seed",
        "3",
        "--train-per-class",
        "2",
        "--eval-per-class",
        "1",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "held-out accuracy" in result.output
    state = torch.load(out, map_location="cpu", weights_only=True)
    model = build_catfish_mini()
    model.load_state_dict(state)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["epochs"] == 1 and meta["seed"] == 3 and meta["heldout_images"] == len(CLASS_NAMES)
    assert "--train-per-class 2" in meta["command"] and "--batch-size 8" in meta["command"]
    assert len(meta["history"]) == 1 and 0.0 <= meta["heldout_accuracy"] <= 1.0
    assert meta["state_dict_sha256"] == weights_sha256(model)


def test_training_is_reproducible_with_the_same_seed(tmp_path: Path):
    cfg = TrainConfig(epochs=1, seed=5, train_per_class=2, eval_per_class=1, batch_size=8, device="cpu", threads=1)
    a = train_catfish(cfg, tmp_path / "a.pt")
    b = train_catfish(cfg, tmp_path / "b.pt")
    c = train_catfish(TrainConfig(**{**cfg.__dict__, "seed": 6}), tmp_path / "c.pt")
    assert a.state_dict_sha256 == b.state_dict_sha256
    assert a.state_dict_sha256 != c.state_dict_sha256


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "tpu9"], "device"),
        (["--epochs", "0"], "epochs"),
        (["--seed", "-1"], "seed"),
    ],
)
def test_train_command_bad_settings_are_one_line_errors(tmp_path: Path, args, message):
    result = CliRunner().invoke(app, ["train", "catfish", "--out", str(tmp_path / "x.pt"), *args])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and message in result.output
    assert not (tmp_path / "x.pt").exists()


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError):
            resolve_device("cuda")
