"""Bad input on the route from a circuit to a deployed model: each is one `error:` line,
exit 1, and nothing written (the refused ONNX export keeps the checked `.pt2` and says so)."""

from __future__ import annotations

import warnings

import pytest
import torch
from _helpers_cli import noise_images
from _helpers_models import two_conv_model
from typer.testing import CliRunner

from circuits.cli.main import app
from ingest import zoo
from tests.test_masks_deploy import RESIDUAL_USER_MODEL, make_mask

runner = CliRunner()

DICT_MODEL = two_conv_model('return {"out": self.c2(self.c1(x))}')


def invoke(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zoo.RandomInitWarning)
        return runner.invoke(app, [str(a) for a in args])


def one_error(r, message: str) -> None:
    assert r.exit_code == 1, r.output
    assert message in r.output, r.output
    assert r.output.count("error:") == 1 and "Traceback" not in r.output, r.output


def test_onnx_refused_keeps_the_checked_program_and_says_which_op(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="the ONNX file needs the [export] extra")
    (tmp_path / "skipnet.py").write_text(RESIDUAL_USER_MODEL)
    name = f"{tmp_path / 'skipnet.py'}:build"
    make_mask(name, ["1", "2"], tmp_path / "m.json")

    def refuse(*_a, **_k):
        raise RuntimeError("Unsupported FX nodes: {'call_function': ['aten.fancy_op.default']}\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    r = invoke("apply", name, "--mask", tmp_path / "m.json", "-o", tmp_path / "p.pt")
    one_error(r, "the ONNX exporter refused the masked model: RuntimeError: Unsupported FX nodes")
    assert "aten.fancy_op.default" in r.output and f"{tmp_path / 'p.pt2'} was written (torch.export)" in r.output
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("__")) == [
        "m.json",
        "p.pt2",
        "skipnet.py",
    ]


def test_a_model_that_returns_no_tensor(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nt.py").write_text(DICT_MODEL)
    noise_images(tmp_path / "imgs", 2, 12)
    r = invoke("ingest", "nt.py:build", "--concept", "x", "--images", "imgs", "--layers", "c1,c2", "--k", 2)
    assert r.exit_code == 0, r.output  # CLA reads layers, not the output
    before = sorted(p.name for p in tmp_path.iterdir())
    r = invoke("ablate", "1", "--model", "nt.py:build", "--images", "imgs")
    one_error(r, "nt.py:build returns dict from its forward, not class logits (B, classes)")
    r = invoke("export", "1", "-o", "m.json")
    assert r.exit_code == 0, r.output
    r = invoke("apply", "nt.py:build", "--mask", "m.json", "-o", "p.pt")
    one_error(r, "nt.py:build returns a dict from its forward, not a tensor")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "m.json"])


@pytest.mark.parametrize(
    "out, message",
    [
        ("m.json", "unsupported file type"),  # onto its own input
        ("nowhere/p.pt", "does not exist"),
        ("p.onnx.txt", "unsupported file type"),
    ],
)
def test_apply_output_paths(tmp_path, monkeypatch, out, message):
    monkeypatch.chdir(tmp_path)
    make_mask("catfish-mini", ["mixed3a", "mixed3b"], tmp_path / "m.json")
    r = invoke("apply", "catfish-mini", "--mask", "m.json", "-o", out)
    one_error(r, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
