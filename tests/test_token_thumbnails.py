"""Looking at token units: a ViT MLP neuron's or head's examples are whole images
with a patch-grid heat-map (where it fires), and a head's attention from the class token is its
heat-map (ingest.token_maps, ingest.thumbnails); the web view serves both."""

from __future__ import annotations

import io
import json
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_vit import LAYERS, TinyViT
from typer.testing import CliRunner

from catalog.engine import close_catalogs_of
from circuits.cli.main import app
from ingest.thumbnails import ThumbnailConfig, neuron_patches
from ingest.token_maps import attention_from_cls, unit_grid

runner = CliRunner()
HEAD, MLP = "encoder.layers.encoder_layer_0.self_attention:heads", "encoder.layers.encoder_layer_0.mlp.1"


@pytest.fixture(scope="module")
def vit() -> TinyViT:
    torch.manual_seed(0)
    return TinyViT().eval()


def test_attention_from_cls_equals_torch_multihead_attention_weights():
    from ingest import zoo

    model = zoo.load_model("typo-vit", layers=[HEAD]).module.eval()
    x = torch.randn(2, 3, 64, 64)
    got = attention_from_cls(model, [HEAD], x)[HEAD]
    mha = model.get_submodule(HEAD.removesuffix(":heads"))
    seen: dict = {}
    hook = mha.register_forward_pre_hook(lambda m, a, k: seen.update(q=a[0]) or None, with_kwargs=True)
    with torch.no_grad():
        model(x)
        hook.remove()
        _, w = mha(seen["q"], seen["q"], seen["q"], need_weights=True, average_attn_weights=False)
    want = w[:, :, 0, 1:].reshape(2, mha.num_heads, 8, 8).numpy()  # from the class token to the 64 patches
    assert got.shape == (2, 4, 8, 8) and np.abs(got - want).max() < 1e-6


def test_attention_from_cls_of_qkv_attention_by_hand(vit):
    x = torch.randn(2, 3, 16, 16)
    got = attention_from_cls(vit, ["blocks.1.attn:heads", "blocks.1.mlp.act"], x)
    assert list(got) == ["blocks.1.attn:heads"]
    seen: dict = {}
    hook = vit.blocks[1].attn.register_forward_pre_hook(lambda m, a: seen.update(x=a[0]) or None)
    with torch.no_grad():
        vit(x)
    hook.remove()
    h, d = 4, 16
    with torch.no_grad():
        qkv = vit.blocks[1].attn.qkv(seen["x"])  # (B, T, 3D)
    for b in range(2):
        for head in range(h):
            q = qkv[b, 0, head * 4 : head * 4 + 4]
            k = qkv[b, :, d + head * 4 : d + head * 4 + 4]
            att = torch.softmax(k @ q / 2.0, 0)[1:].reshape(4, 4).numpy()
            assert np.abs(got["blocks.1.attn:heads"][b, head] - att).max() < 1e-6


def test_unit_grid_is_the_patch_tokens_on_their_grid():
    act = torch.arange(17 * 3, dtype=torch.float32).reshape(17, 3)  # (T, D), one class token
    assert np.array_equal(unit_grid("b.mlp.act", act, 2), act[1:, 2].reshape(4, 4).numpy())
    heads = torch.randn(2, 17, 5)  # (H, T, hd)
    assert np.allclose(unit_grid("b.attn:heads", heads, 1), heads[1, 1:].norm(dim=-1).reshape(4, 4).numpy())


def test_token_units_get_whole_image_heatmaps_and_heads_their_attention(vit):
    x = torch.rand(5, 3, 16, 16)
    got = neuron_patches(
        vit, list(LAYERS[:2]), x, [[1], [3]], mean=None, std=None, config=ThumbnailConfig(top=2, size=32)
    )
    head, mlp = got
    for unit in got:
        assert [p[2] for p in unit.patches] == [(0, 0, 16, 16)] * 2  # the whole image, no crop
        tile = np.asarray(Image.open(io.BytesIO(unit.patches[0][3])).convert("RGB"), dtype=np.float32)
        assert tile.shape == (32, 32, 3)
    assert all(h is not None for h in head.heatmaps)  # attention from the class token
    assert mlp.heatmaps == (None, None)  # the tile is the MLP neuron's map
    # the MLP tile is tinted where the neuron fires most: its strongest patch is the most orange
    img = mlp.patches[0][0]
    with torch.no_grad():
        seen: dict = {}
        hook = vit.blocks[0].mlp.act.register_forward_hook(lambda m, a, o: seen.update(o=o) or None)
        vit(x[img : img + 1])
        hook.remove()
    grid = seen["o"][0, 1:, 3].reshape(4, 4)
    r, c = divmod(int(grid.argmax()), 4)
    lo, hi = divmod(int(grid.argmin()), 4)
    tile = np.asarray(Image.open(io.BytesIO(mlp.patches[0][3])).convert("RGB"), dtype=np.float32)
    orange = tile[..., 0] - tile[..., 2]
    assert orange[r * 8 + 4, c * 8 + 4] > orange[lo * 8 + 4, hi * 8 + 4]


@pytest.fixture(scope="module")
def vit_catalog(tmp_path_factory):
    """A typo-vit run (one head layer, the next MLP, k = 1) on three noise images, with thumbnails."""
    tmp = tmp_path_factory.mktemp("vit_web")
    images = tmp / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / f"{i}.png")
    db = tmp / "c.duckdb"
    r = runner.invoke(
        app,
        ["ingest", "typo-vit", "--concept", "noise", "--images", str(images), "--layers", f"{HEAD},{MLP}"]
        + ["--k", "1", "--device", "cpu", "--db", str(db)],
    )
    assert r.exit_code == 0, r.output
    return db


def test_web_view_serves_token_heatmaps_for_a_typo_vit_neuron_and_head(vit_catalog):
    from test_serve_support import ServerThread

    db = vit_catalog
    query = (
        "select l.name as layer, p.x0, p.y0, p.x1, p.y1, p.heatmap is not null as heat from neuron_patch p "
        "join neuron n on n.id = p.neuron_id join layer l on l.id = n.layer_id"
    )
    r = runner.invoke(app, ["sql", query, "--db", str(db), "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert {(row["x0"], row["y0"], row["x1"], row["y1"]) for row in rows} == {(0, 0, 64, 64)}
    assert {(row["layer"], row["heat"]) for row in rows} == {(HEAD, True), (MLP, False)}
    close_catalogs_of(db)  # the server opens it read-only
    server = ServerThread(db)
    try:
        with urllib.request.urlopen(server.url + "/circuit/1", timeout=30) as resp:
            page = resp.read().decode()
        assert "attention from CLS:" in page and f'alt="{HEAD}:' in page and ", attention from CLS, example 0" in page
        heat = page.split('class="heatmap" src="', 1)[1].split('"', 1)[0]
        assert heat.startswith("/heat/1/")
        with urllib.request.urlopen(server.url + heat, timeout=30) as resp:
            assert resp.status == 200 and Image.open(io.BytesIO(resp.read())).size[0] >= 64
        tiles = [t.split('"', 1)[0] for t in page.split('<img src="')[1:] if t.startswith("/patch/1/")]
        assert len(tiles) == 2 * 3  # one head and one MLP neuron, one tile per image (3 images)
        for t in tiles[:1] + tiles[-1:]:
            with urllib.request.urlopen(server.url + t, timeout=30) as resp:
                assert Image.open(io.BytesIO(resp.read())).size == (64, 64)  # the whole image, not a crop
    finally:
        server.close()


@pytest.mark.slow  # starts Chromium
def test_token_heatmaps_load_in_chromium(vit_catalog):
    from test_serve_support import Browser, ServerThread

    close_catalogs_of(vit_catalog)
    server, browser = ServerThread(vit_catalog), Browser()
    try:
        browser.goto(server.url + "/circuit/1")
        assert browser.errors() == []
        heat = browser.evaluate("[...document.querySelectorAll('img.heatmap')].map(i => [i.complete, i.naturalWidth])")
        tiles = browser.evaluate(
            "[...document.querySelectorAll('.patches img:not(.heatmap)')].map(i => [i.complete, i.naturalWidth])"
        )
        assert len(heat) == 3 and len(tiles) == 6  # the head's attention maps; both units' whole-image tiles
        assert all(done and width > 0 for done, width in heat + tiles)
    finally:
        browser.close()
        server.close()
