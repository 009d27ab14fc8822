"""CLA on token layers (docs/method.md, "Token models"): heads as units, token selection, and
the engine against a loop written here from the definition alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_vit import TinyViT
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from catalog.errors import CircuitsError
from ingest.cla import attribute, attribute_reference
from ingest.cla.heads import HeadSpecError, read_heads
from ingest.cla.tokens import TokenSelectionError, check_image_size, position_masks
from ingest.hooks import scoped_hooks


@pytest.fixture(scope="module")
def vit() -> TinyViT:
    torch.manual_seed(0)
    return TinyViT().eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _definition(model, up, down, up_groups, down_groups, up_tokens, down_tokens, x):
    """S[m, n] = mean_x Σ_(t∈up_tokens) Σ_(f∈m) |A_f[t]| · |∂‖A_n‖₂ / ∂A_f[t]|, ‖·‖₂ over n's
    down_tokens × features; one image and one downstream unit at a time, (B, T, D) modules."""
    s = torch.zeros(len(up_groups), len(down_groups), dtype=torch.float64)
    got: dict[str, torch.Tensor] = {}

    def leaf_hook(module, args, out):
        got["a"] = out.detach().requires_grad_(True)
        return got["a"]

    def keep(module, args, out):
        got["y"] = out

    for b in range(len(x)):
        h1 = model.get_submodule(up).register_forward_hook(leaf_hook)
        h2 = model.get_submodule(down).register_forward_hook(keep)
        try:
            with torch.enable_grad():
                model(x[b : b + 1])
        finally:
            h1.remove()
            h2.remove()
        a, y = got["a"][0], got["y"][0]  # (T, D)
        for n, gn in enumerate(down_groups):
            norm = y[down_tokens][:, gn].pow(2).sum().sqrt()
            (g,) = torch.autograd.grad(norm, got["a"], retain_graph=True)
            term = (a.abs() * g[0].abs())[up_tokens]  # (T_up, D)
            for m, gm in enumerate(up_groups):
                s[m, n] += term[:, gm].sum().double()
    return (s / len(x)).float().detach()


HEADS = [list(range(4 * h, 4 * h + 4)) for h in range(4)]
MLP = [[f] for f in range(32)]
TOKENS = {"all": list(range(17)), "patches": list(range(1, 17)), "cls": [0]}


@pytest.mark.parametrize("tokens", ["all", "patches", "cls"])
def test_heads_and_tokens_match_the_definition(vit, images, tokens):
    layers = ["blocks.0.attn:heads", "blocks.0.mlp.act", "blocks.1.attn:heads"]
    got = attribute(vit, layers, images, device="cpu", tokens=tokens, batched_vjp=False)
    batched = attribute(vit, layers, images, device="cpu", tokens=tokens, batched_vjp=True)
    ref = attribute_reference(vit, layers, images, tokens=tokens)
    sel = TOKENS[tokens]
    want = [
        _definition(vit, "blocks.0.attn.heads_out", "blocks.0.mlp.act", HEADS, MLP, sel, sel, images),
        _definition(vit, "blocks.0.mlp.act", "blocks.1.attn.heads_out", MLP, HEADS, sel, sel, images),
    ]
    for g, gb, r, w in zip(got, batched, ref, want):
        assert g.shape == tuple(w.shape)
        scale = float(w.detach().abs().max())
        assert scale > 0
        for s in (g, gb, r):  # both generic forms and the reference loop
            assert float((torch.from_numpy(s) - w).abs().max()) <= 1e-5 * scale


def test_token_selection_changes_the_scores(vit, images):
    layers = ["blocks.0.attn:heads", "blocks.0.mlp.act"]
    a = attribute(vit, layers, images, device="cpu", tokens="all")[0]
    c = attribute(vit, layers, images, device="cpu", tokens="cls")[0]
    assert abs(a - c).max() > 1e-3 * abs(a).max()


def _tv_vit() -> VisionTransformer:
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=5
    ).eval()
    nn.init.normal_(model.heads.head.weight)  # torchvision starts it at zero: logits would not move
    return model


def test_multihead_attention_heads_are_the_out_proj_input():
    """Zeroing head 2 through the hook equals zeroing its 8 input columns of out_proj."""
    model, x = _tv_vit(), torch.randn(2, 3, 32, 32)
    name = "encoder.layers.encoder_layer_1.self_attention:heads"
    r = read_heads(model, name)
    assert (r.kind, r.num_heads, r.head_dim) == ("mha", 4, 8)
    with torch.no_grad():
        plain = model(x)
        seen = {}

        def zero2(module, args, z):
            seen["shape"] = tuple(z.shape)
            z = z.clone()
            z[:, 2] = 0
            return z

        with scoped_hooks(model, {name: lambda m, a, z: None}):
            same = model(x)
        with scoped_hooks(model, {name: zero2}):
            hooked = model(x)
        w = model.encoder.layers.encoder_layer_1.self_attention.out_proj.weight
        saved = w[:, 16:24].clone()
        w[:, 16:24] = 0
        try:
            baked = model(x)
        finally:
            w[:, 16:24] = saved
    assert seen["shape"] == (2, 4, 17, 8)
    assert torch.allclose(same, plain, atol=1e-5)
    assert not torch.allclose(hooked, plain, atol=1e-3)
    assert torch.allclose(hooked, baked, atol=1e-5)


def test_multihead_attention_reader_chains_hooks_keeps_masks_and_restores_the_projection():
    """The reader runs the module's own forward with an identity projection: two head hooks on
    one module chain (the second sees the first's replacement), a causal mask and averaged
    weights come through as the module computes them, another forward hook of the module sees
    the projected output, and the projection is the same Parameter after a forward that raised."""
    torch.manual_seed(3)
    attn = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    model = nn.Sequential(attn)  # the module is called as model[0](x, x, x, ...)
    x = torch.randn(2, 5, 16)
    mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    weight = attn.out_proj.weight
    with torch.no_grad():
        plain, plain_w = attn(x, x, x, attn_mask=mask)
        seen: list[torch.Tensor] = []
        others: list[torch.Tensor] = []
        attn.register_forward_hook(lambda m, a, out: others.append(out[0]))

        def double(module, args, z):
            return z * 2

        with scoped_hooks(model, {"0:heads": double}), scoped_hooks(model, {"0:heads": lambda m, a, z: seen.append(z)}):
            doubled, doubled_w = attn(x, x, x, attn_mask=mask)
        with scoped_hooks(model, {"0:heads": lambda m, a, z: None}), pytest.raises((AssertionError, RuntimeError)):
            attn(x, x, x[:, :, :3])  # a value of the wrong width: the forward raises after the swap
        again, _ = attn(x, x, x, attn_mask=mask)
    attn._forward_hooks.clear()
    heads = plain_heads = seen[0] / 2
    assert heads.shape == (2, 4, 5, 4)
    assert torch.allclose(doubled, 2 * plain - attn.out_proj.bias, atol=1e-6)  # P(2z) + b
    assert torch.equal(doubled_w, plain_w)  # the attention weights are the module's own
    assert torch.allclose(others[0], doubled) and torch.allclose(others[-1], again)
    assert attn.out_proj.weight is weight and torch.equal(again, plain)
    causal = plain_heads[:, :, 0]  # the first query attends to the first value only
    v = F.linear(x, attn.in_proj_weight[32:], attn.in_proj_bias[32:]).view(2, 5, 4, 4).transpose(1, 2)
    assert torch.allclose(causal, v[:, :, 0], atol=1e-6)


def test_torchvision_vit_heads_and_mlp_match_the_reference():
    model, x = _tv_vit(), torch.randn(2, 3, 32, 32)
    layers = [
        "encoder.layers.encoder_layer_0.self_attention:heads",
        "encoder.layers.encoder_layer_0.mlp.1",
        "encoder.layers.encoder_layer_1.self_attention:heads",
    ]
    got = attribute(model, layers, x, device="cpu", tokens="patches")
    ref = attribute_reference(model, layers, x, tokens="patches")
    assert [g.shape for g in got] == [(4, 64), (64, 4)]
    for g, r in zip(got, ref):
        assert abs(g - r).max() <= 1e-5 * abs(r).max()


class _NoCount(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv, self.proj = nn.Linear(8, 24), nn.Linear(8, 8)


def test_unreadable_heads_say_what_to_declare(vit):
    with pytest.raises(HeadSpecError, match="not an attention module"):
        read_heads(vit, "blocks.0.mlp:heads")
    with pytest.raises(HeadSpecError, match="declare the head count as an int attribute `num_heads`"):
        read_heads(nn.Sequential(_NoCount()), "0:heads")


def test_token_selection_bad_input(vit, images):
    with pytest.raises(TokenSelectionError, match="use one of all, patches, cls"):
        attribute(vit, ["blocks.0.attn:heads", "blocks.0.mlp.act"], images, tokens="middle")
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU())
    with pytest.raises(TokenSelectionError, match="not tokens"):
        attribute(conv, ["1", "3"], images, tokens="patches")
    square = torch.zeros(1, 16, 8)  # a 4×4 grid and no class token
    with pytest.raises(TokenSelectionError, match="leaves no tokens"):
        position_masks(["x"], [square], "cls")
    assert position_masks(["x"], [square], "patches")[0].sum() == 16


def test_image_size_names_the_size_the_vit_takes():
    with pytest.raises(CircuitsError, match="takes 32×32 images.*`input_size=` 32"):
        check_image_size(_tv_vit(), torch.zeros(1, 3, 64, 64))
    check_image_size(_tv_vit(), torch.zeros(1, 3, 32, 32))


def test_open_clip_vision_transformer_heads():
    """open_clip's VisionTransformer (random init): its blocks' nn.MultiheadAttention heads and MLP
    activations, engine against the reference loop."""
    open_clip = pytest.importorskip("open_clip", reason="open_clip is not installed (the [clip] extra)")
    from open_clip.transformer import VisionTransformer as ClipViT

    torch.manual_seed(0)
    model = ClipViT(image_size=32, patch_size=8, width=32, layers=2, heads=4, mlp_ratio=2.0, output_dim=8).eval()
    assert open_clip.__version__
    layers = [
        "transformer.resblocks.0.attn:heads",
        "transformer.resblocks.0.mlp.gelu",
        "transformer.resblocks.1.attn:heads",
    ]
    x = torch.randn(2, 3, 32, 32)
    got = attribute(model, layers, x, device="cpu")
    ref = attribute_reference(model, layers, x)
    assert [g.shape for g in got] == [(4, 64), (64, 4)]
    for g, r in zip(got, ref):
        assert abs(g - r).max() <= 1e-5 * abs(r).max()


def test_token_box_is_the_patch_and_its_neighbours():
    from ingest.cla.tokens import token_box

    # 17 tokens: class token + a 4×4 grid of patches, 16×16 images (4-pixel patches)
    assert token_box("b.mlp.act", (2, 17, 32), 0, (16, 16)) == (0, 0, 16, 16)  # class token
    assert token_box("b.mlp.act", (2, 17, 32), 1, (16, 16)) == (0, 0, 8, 8)  # patch (0, 0)
    assert token_box("b.mlp.act", (2, 17, 32), 1 + 4 * 2 + 1, (16, 16)) == (0, 4, 12, 16)  # patch (2, 1)
    assert token_box("b.attn:heads", (2, 4, 17, 4), 4 * 6 + 3, (16, 16)) == (0, 0, 12, 12)  # token 6: (1, 1)
    assert token_box("conv", (2, 8, 4, 4), 3, (16, 16)) is None


class _OpenClipStyleAttention(nn.Module):
    """open_clip's own `Attention` as written there (in_proj_weight, num_heads, batch_first, and an
    `out_proj` it calls as a module), without its optional scaled-cosine and head-scale branches."""

    def __init__(self, dim: int = 16, num_heads: int = 4):
        super().__init__()
        self.num_heads, self.batch_first, self.scale = num_heads, True, (dim // num_heads) ** -0.5
        self.in_proj_weight = nn.Parameter(torch.randn(3 * dim, dim) * dim**-0.5)
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, c = x.shape
        q, k, v = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(n, length, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        x = ((q * self.scale) @ k.transpose(-1, -2)).softmax(dim=-1) @ v
        return self.out_proj(x.transpose(1, 2).reshape(n, length, c))


def test_open_clip_style_attention_heads():
    torch.manual_seed(0)
    vit = TinyViT().eval()
    for block in vit.blocks:
        block.attn = _OpenClipStyleAttention()
    r = read_heads(vit, "blocks.1.attn:heads")
    assert (r.kind, r.num_heads, r.head_dim, r.proj_path) == ("proj", 4, 4, "out_proj")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        with scoped_hooks(
            vit, {"blocks.1.attn:heads": lambda m, a, z: torch.where(torch.arange(4)[:, None, None] == 1, 0, z)}
        ):
            hooked = vit(x)
        w = vit.blocks[1].attn.out_proj.weight
        saved = w[:, 4:8].clone()
        w[:, 4:8] = 0
        baked = vit(x)
        w[:, 4:8] = saved
    assert torch.allclose(hooked, baked, atol=1e-6)
    layers = ["blocks.0.attn:heads", "blocks.0.mlp.act", "blocks.1.attn:heads"]
    got, ref = attribute(vit, layers, x, device="cpu"), attribute_reference(vit, layers, x)
    for g, rr in zip(got, ref):
        assert abs(g - rr).max() <= 1e-5 * abs(rr).max()
