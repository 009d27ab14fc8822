"""Feature visualisation (`ingest.featurevis`, `circuits thumbnails --featurevis`): the Fourier
picture against a plain reference (values and gradients), the batched objective against one
unit at a time, the stored rows, bad input (other or missing weights), and the slow check that
each picture of a 15-neuron catfish-mini circuit ranks its own neuron first."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from _helpers_cli import noise_images, tiny_catalog
from _helpers_cli import sql_rows as _rows
from PIL import Image
from tiny_model import TINY_MODEL
from typer.testing import CliRunner

from circuits.cli.main import app
from ingest.featurevis import FeatureVisConfig, _Pictures, _unit_means, feature_visualisations, unit_activations

runner = CliRunner()


def _tiny() -> torch.nn.Module:
    scope: dict = {}
    exec(TINY_MODEL, scope)
    torch.manual_seed(0)
    return scope["build"]().eval()


def test_fourier_picture_matches_a_plain_reference_in_values_and_gradients():
    """_Pictures = sigmoid(C · irfft2(scale · spectrum) / 4), written out with numpy's FFT."""
    g = torch.Generator().manual_seed(3)
    pic = _Pictures(2, 12, 1.0, 0.5, g).double()
    out = pic()  # (2, 3, 12, 12)
    spec = pic.spectrum.detach().numpy()
    fy = np.fft.fftfreq(12)[:, None]
    fx = np.fft.rfftfreq(12)[None, :]
    scale = 1.0 / np.maximum(np.sqrt(fx**2 + fy**2), 1 / 12)
    z = (spec[..., 0] + 1j * spec[..., 1]) * scale
    image = np.fft.irfft2(z, s=(12, 12), norm="ortho") / 4.0
    c = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    c = c / np.max(np.linalg.norm(c, axis=0))
    ref = 1 / (1 + np.exp(-np.einsum("ij,bjhw->bihw", c, image)))
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-6, atol=1e-7)  # scale built in float32
    small = _Pictures(1, 6, 1.0, 0.5, torch.Generator().manual_seed(1)).double()
    assert torch.autograd.gradcheck(
        lambda s: torch.sigmoid(torch.fft.irfft2(torch.view_as_complex(s * small.scale), s=(6, 6), norm="ortho")).sum(),
        (small.spectrum.detach().clone().requires_grad_(True),),
    )


def test_batched_objective_gives_each_picture_its_own_units_gradient():
    """One batch (picture i ↔ unit i) equals three separate single-unit objectives."""
    model = _tiny()
    for p in model.parameters():
        p.requires_grad_(False)
    units = [("1", 2), ("3", 5), ("5", 0)]
    order = ["1", "3", "5"]
    from ingest.featurevis import _layer_outputs

    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float32).requires_grad_(True)
    means = _unit_means(_layer_outputs(model, order, order, x), units, range(3))
    means.diagonal().sum().backward()
    for i, unit in enumerate(units):
        xi = x.detach()[i : i + 1].clone().requires_grad_(True)
        out = model[: int(unit[0]) + 1](xi)  # plain: the Sequential up to the layer
        value = out[0, unit[1]].mean()
        value.backward()
        torch.testing.assert_close(means[i, i].detach(), value.detach())
        torch.testing.assert_close(x.grad[i], xi.grad[0])


def test_feature_visualisations_are_seeded_leave_the_model_alone_and_raise_their_unit():
    model = _tiny()
    with torch.no_grad():  # random init leaves many ReLUs silent on grey: bias them on
        for i in (0, 2, 4):
            model[i].bias.add_(0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    units = [("3", 1), ("3", 4), ("5", 2)]
    cfg = FeatureVisConfig(size=24, steps=40, seed=5)
    a = feature_visualisations(model, units, mean=None, std=None, order=["1", "3", "5"], config=cfg)
    b = feature_visualisations(model, units, mean=None, std=None, order=["1", "3", "5"], config=cfg)
    assert [(f.layer, f.channel) for f in a] == units
    for fa, fb in zip(a, b):
        assert torch.equal(fa.pixels, fb.pixels) and fa.png == fb.png  # seeded
        assert fa.pixels.shape == (3, 24, 24) and fa.png.startswith(b"\x89PNG")
        assert Image.open(__import__("io").BytesIO(fa.png)).size == (24, 24)
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    grey = torch.full((3, 3, 24, 24), 0.5)
    start = unit_activations(model, units, grey, mean=None, std=None).diagonal()
    end = torch.tensor([f.activation for f in a])
    assert (end > start).all(), (start, end)  # each picture drives its own unit above a flat grey


@pytest.fixture
def tiny_run(tmp_path):
    return tiny_catalog(tmp_path)


def test_thumbnails_featurevis_stores_a_picture_per_circuit_neuron(tiny_run):
    db = tiny_run["db"]
    args = ["thumbnails", "1", tiny_run["model"], "--featurevis", "--fv-size", "24", "--fv-steps", "5", "--seed", "2"]
    r = runner.invoke(app, [*args, "--db", str(db), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "stored 6 feature visualisations (5 steps, seed 2) for run 1" in r.output
    rows = _rows(
        db, "select neuron_id, width, height, params, octet_length(data) as n from neuron_featurevis order by 1"
    )
    assert len(rows) == 6 and all(r["width"] == r["height"] == 24 and r["n"] > 100 for r in rows)
    params = json.loads(rows[0]["params"]) if isinstance(rows[0]["params"], str) else rows[0]["params"]
    assert params["size"] == 24 and params["steps"] == 5 and params["seed"] == 2
    assert params["recipe"] == "lucent-fft-decorrelated" and len(params["weights_sha256"]) == 64
    heat = _rows(db, "select count(*) as n from neuron_patch where heatmap is not null")
    assert heat[0]["n"] > 0  # where it fires, stored with each patch


def test_featurevis_refuses_other_or_missing_weights_and_writes_nothing(tiny_run):
    db = tiny_run["db"]
    other = tiny_run["dir"] / "other.pt"
    model = _tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    torch.save(model.state_dict(), other)
    before = _rows(db, "select count(*) as n, sum(octet_length(data)) as b from neuron_patch")
    base = ["thumbnails", "1", tiny_run["model"], "--featurevis", "--fv-steps", "2", "--db", str(db)]
    r = runner.invoke(app, [*base, "--weights", str(other)])
    assert r.exit_code == 1 and r.output.startswith("error:") and "weights" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, [*base, "--weights", str(tiny_run["dir"] / "missing.pt")])
    assert r.exit_code == 1 and r.output.startswith("error:"), r.output
    assert _rows(db, "select count(*) as n from neuron_featurevis")[0]["n"] == 0
    assert _rows(db, "select count(*) as n, sum(octet_length(data)) as b from neuron_patch") == before


@pytest.mark.slow
def test_each_picture_ranks_its_own_neuron_first_on_a_catfish_circuit(tmp_path):
    """15-neuron catfish-mini circuit (k = 3 over 5 layers), defaults, 1 thread: on >= 80 % of the
    pictures the own neuron has the highest activation relative to each neuron's largest over
    all the pictures; the time is printed (docs/results.md)."""
    from catalog import store
    from catalog.engine import open_catalog
    from ingest import zoo
    from ingest.image_sets import resolve_images
    from ingest.pipeline import IngestConfig, ingest_concept

    cat = open_catalog(tmp_path / "c.duckdb", create=True)
    images = resolve_images(dataset="catfish:stripes_star", n=8, seed=0)
    result = ingest_concept(cat, IngestConfig("catfish-mini", "stripes_star", k=3, device="cpu"), images)
    with cat.session() as s:
        c = store.read_circuit(s, result.circuit_id)
    units = [(layer, ch) for layer, chans in zip(c.layer_names, c.channels) for ch in chans]
    assert len(units) == 15
    loaded = zoo.load_model("catfish-mini")
    pp = loaded.spec.pp
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        pics = feature_visualisations(
            loaded.module, units, mean=pp.mean, std=pp.std, order=list(c.layer_names), config=FeatureVisConfig(size=64)
        )
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    acts = unit_activations(
        loaded.module, units, torch.stack([p.pixels for p in pics]), mean=pp.mean, std=pp.std, order=list(c.layer_names)
    )  # (picture, unit)
    relative = acts / acts.max(dim=0, keepdim=True).values.clamp_min(1e-6)
    own_first = (relative.argmax(dim=1) == torch.arange(len(units))).float().mean().item()
    print(
        f"catfish-mini 15 neurons, 64 px, {FeatureVisConfig().steps} steps, 1 thread: {seconds:.1f} s; own first {own_first:.0%}"
    )
    assert own_first >= 0.8


def test_reference_folder_without_readable_images_and_models_without_a_set_write_nothing(tiny_run):
    db = tiny_run["db"]
    empty = tiny_run["dir"] / "not-images"
    empty.mkdir()
    (empty / "a.png").write_bytes(b"not a png")
    (empty / "notes.txt").write_text("hello")
    before = _rows(db, "select count(*) as n from neuron_patch")
    base = ["thumbnails", "1", tiny_run["model"], "--db", str(db)]
    r = runner.invoke(app, [*base, "--reference", str(empty)])
    assert r.exit_code == 1 and r.output.startswith("error:") and len(r.output.strip().splitlines()) == 1, r.output
    r = runner.invoke(app, [*base, "--reference-set"])
    assert r.exit_code == 1 and "no built-in reference set" in r.output and "--reference DIR" in r.output, r.output
    assert _rows(db, "select count(*) as n from neuron_reference_patch")[0]["n"] == 0
    assert _rows(db, "select count(*) as n from neuron_patch") == before


def test_reference_folder_gives_each_circuit_neuron_its_top_examples(tiny_run):
    db = tiny_run["db"]
    folder = noise_images(tiny_run["dir"] / "ref", n=6, seed=1)
    r = runner.invoke(
        app, ["thumbnails", "1", tiny_run["model"], "--reference", str(folder), "--db", str(db), "--quiet"]
    )
    assert r.exit_code == 0, r.output
    assert "stored 24 reference patches (6 images of dir:" in r.output
    rows = _rows(
        db,
        "select p.neuron_id, p.rank, c.name as concept from neuron_reference_patch p "
        "join example_image e on e.id = p.example_image_id join concept c on c.id = e.concept_id order by 1, 2",
    )
    assert len(rows) == 24 and {r["concept"] for r in rows} == {"reference:" + tiny_run["model"]}


class _Tokens(torch.nn.Module):
    """A toy token model: 4x4 patches → (B, T, D) tokens → an MLP over features."""

    def __init__(self):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU())

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)  # (B, T, D)
        return self.mlp(t)  # (B, T, 6)


def test_token_units_get_pictures_too():
    """A unit of a (B, T, D) layer is one feature, its activation the mean over tokens."""
    torch.manual_seed(0)
    model = _Tokens().eval()
    with torch.no_grad():
        model.mlp[0].bias.add_(1.0)  # awake on grey
    units = [("mlp", 0), ("mlp", 3)]
    grey = torch.full((2, 3, 16, 16), 0.5)
    start = unit_activations(model, units, grey, mean=None, std=None).diagonal()
    pics = feature_visualisations(model, units, mean=None, std=None, config=FeatureVisConfig(size=16, steps=30))
    direct = model(torch.stack([p.pixels for p in pics]))  # (2, T, 6)
    end = torch.tensor([p.activation for p in pics])
    torch.testing.assert_close(end, torch.stack([direct[0, :, 0].mean(), direct[1, :, 3].mean()]))
    assert (end > start).all(), (start, end)


def test_heatmap_overlay_tints_where_the_map_is_high():
    from ingest.thumbnails import heatmap_overlay

    pixels = np.full((32, 32, 3), 128, np.uint8)
    amap = np.zeros((4, 4), np.float32)
    amap[0, 0] = 2.0  # fires top-left only
    im = np.asarray(Image.open(__import__("io").BytesIO(heatmap_overlay(pixels, amap, 2.0, 32))).convert("RGB"))
    hot, cold = im[:4, :4].astype(float).mean(axis=(0, 1)), im[-4:, -4:].astype(float).mean(axis=(0, 1))
    assert hot[0] > hot[2] + 40  # orange where it fires
    assert cold.max() < 128 * 0.35  # dimmed where it is silent
    assert abs(cold[0] - cold[2]) < 3  # and not tinted
