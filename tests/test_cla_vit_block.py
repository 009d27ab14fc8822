"""The transformer-block path (`ingest.cla.vit_block`, `ingest.cla.block_vjp`): hand-written batched
VJPs against autograd's, and the engine's scores against the reference loop (docs/results.md,
"Fast exact path for transformer blocks")."""

from __future__ import annotations

import pytest
import torch
from cla_helpers import CustomBackward
from tiny_vit import TinyViT
from torch import nn

import ingest.cla.attribution as attribution
from ingest.cla import attribute, attribute_reference, describe_paths
from ingest.cla.block_vjp import LowRank, attention, attention_vjp, head_attention_vjp, layer_norm, norm_vjp

RTOL = 1e-4  # scores: of the largest score
VJP_RTOL = 1e-5  # hand-written VJPs against autograd's, of the largest entry


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    scale = float(want.abs().max())
    assert scale > 0
    return float((got.detach() - want.detach()).abs().max()) / scale


@pytest.fixture
def spans(monkeypatch) -> list[str]:
    """The kinds of the pairs whose scores came from the block path."""
    used: list[str] = []
    real = attribution.span_scores

    def counted(span, *args, **kwargs):
        out = real(span, *args, **kwargs)
        if out is not None:
            used.append(span.kind)
        return out

    monkeypatch.setattr(attribution, "span_scores", counted)
    return used


def test_layer_norm_and_its_vjp_match_autograd():
    torch.manual_seed(0)
    ln = nn.LayerNorm(24, eps=1e-6)
    with torch.no_grad():
        ln.weight.uniform_(-2, 2)
        ln.bias.uniform_(-1, 1)
    x = torch.randn(2, 7, 24, requires_grad=True)
    ref = ln(x)
    y, pieces = layer_norm(x.detach(), ln)
    assert _rel(y, ref.detach()) <= VJP_RTOL
    dy = torch.randn(5, 2, 7, 24)
    want = torch.stack([torch.autograd.grad(ref, x, d, retain_graph=True)[0] for d in dy]).view(5, 14, 24)
    assert _rel(norm_vjp(dy.view(5, 14, 24), pieces), want) <= VJP_RTOL
    scaled = dy.view(5, 14, 24) * ln.weight.detach()
    assert _rel(norm_vjp(scaled, pieces, scaled=True), want) <= VJP_RTOL


def _attention_ref(h, w_qkv, b_qkv, heads):
    """Attention heads (B, T, D) by torch's own scaled-dot-product attention."""
    b, t, d = h.shape
    q, k, v = nn.functional.linear(h, w_qkv, b_qkv).view(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    return nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)


def test_attention_vjp_dense_and_low_rank_match_autograd():
    torch.manual_seed(0)
    b, t, d, nh, u = 2, 9, 16, 4, 3
    h = torch.randn(b, t, d, requires_grad=True)
    w_qkv, b_qkv, w_out = torch.randn(3 * d, d) / 4, torch.randn(3 * d), torch.randn(d, d) / 4
    ref = _attention_ref(h, w_qkv, b_qkv, nh)
    z, at = attention(h.detach(), w_qkv, b_qkv, w_out, nh)
    assert _rel(z, ref.detach()) <= VJP_RTOL
    # the low-rank form: dO[j] = α[j] ⊗ pw[j] − β[j] ∘ X
    alpha, beta, pw, x = torch.randn(u, b, t), torch.randn(u, b, t), torch.randn(u, d), torch.randn(b, t, d)
    dz = alpha[..., None] * pw[:, None, None, :] - beta[..., None] * x
    want = torch.stack([torch.autograd.grad(ref, h, c, retain_graph=True)[0] for c in dz]).view(u, b * t, d)
    assert _rel(attention_vjp(dz, at), want) <= VJP_RTOL
    m = x.view(b, t, nh, -1).transpose(1, 2) @ at.v.transpose(-2, -1)  # (B, H, T, T)
    low = LowRank(alpha=alpha, beta=beta, pw=pw, pm=m * at.p)
    assert _rel(attention_vjp(dz, at, low_rank=low), want) <= VJP_RTOL


def test_one_head_vjp_matches_autograd():
    torch.manual_seed(1)
    b, t, d, nh = 2, 9, 16, 4
    h = torch.randn(b, t, d, requires_grad=True)
    w_qkv, b_qkv = torch.randn(3 * d, d) / 4, torch.randn(3 * d)
    ref = _attention_ref(h, w_qkv, b_qkv, nh).view(b, t, nh, d // nh)  # (B, T, H, hd)
    _, at = attention(h.detach(), w_qkv, b_qkv, torch.eye(d), nh)
    for heads in ([2, 0, 3], [0, 1, 2, 3]):  # some heads (gathered), every head in order (views)
        dzh = torch.randn(b, len(heads), t, d // nh).transpose(0, 1)  # as the engine passes it
        want = []
        for j, hh in enumerate(heads):
            cot = torch.zeros_like(ref)
            cot[:, :, hh] = dzh[j]
            want.append(torch.autograd.grad(ref, h, cot, retain_graph=True)[0].view(b * t, d))
        assert _rel(head_attention_vjp(dzh, at, heads), torch.stack(want)) <= VJP_RTOL


TINY_LAYERS = ["blocks.0.attn:heads", "blocks.0.mlp.act", "blocks.1.attn:heads", "blocks.1.mlp.act", "blocks.2.mlp.act"]
TV_LAYERS = [
    "encoder.layers.encoder_layer_0.self_attention:heads",
    "encoder.layers.encoder_layer_0.mlp.1",
    "encoder.layers.encoder_layer_1.self_attention:heads",
    "encoder.layers.encoder_layer_1.mlp.1",
    "encoder.layers.encoder_layer_2.mlp.1",
]


@pytest.mark.parametrize("tokens", ["all", "patches", "cls"])
@pytest.mark.parametrize("which", ["qkv/proj", "torchvision"])
def test_engine_matches_the_reference(vit, tv_vit, images, spans, tokens, which):
    """Head units and MLP units, all three pair kinds, every token selection, two block styles."""
    model, layers = (vit, TINY_LAYERS) if which == "qkv/proj" else (tv_vit, TV_LAYERS)
    x = images if which == "qkv/proj" else torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    got = attribute(model, layers, x, device="cpu", tokens=tokens)
    ref = attribute_reference(model, layers, x, tokens=tokens)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        assert abs(g - r).max() <= RTOL * abs(r).max()
    assert spans == ["heads", "to_heads", "heads", "mlp"]


def test_small_chunks_give_the_same_scores(tv_vit, spans):
    """A memory budget that forces one unit per chunk."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    layers = TV_LAYERS[2:]
    got = attribute(tv_vit, layers, x, device="cpu", max_memory=3 * 2**20)
    ref = attribute_reference(tv_vit, layers, x)
    for g, r in zip(got, ref):
        assert abs(g - r).max() <= RTOL * abs(r).max()
    assert spans == ["heads", "mlp"]


def test_describe_paths_names_the_block_path(vit, images):
    notes = describe_paths(vit, TINY_LAYERS, images)
    assert [n.split(")")[0] for n in notes] == [
        "transformer block (heads",
        "transformer block (to_heads",
        "transformer block (heads",
        "transformer block (mlp",
    ]


class _PostNorm(nn.Module):
    """A post-LN block with the pre-LN block's module names: other values."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = block.norm1, block.attn, block.norm2, block.mlp

    def forward(self, x):
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


@pytest.mark.parametrize("change", ["custom backward", "post-norm block"])
def test_blocks_it_cannot_reproduce_fall_back_to_autograd(images, spans, change):
    """Same module names, another function: the probe's checks reject the block path and the
    scores still equal the reference."""
    torch.manual_seed(0)
    model = TinyViT(depth=2).eval()
    if change == "custom backward":
        model.blocks[1].attn.heads_out = CustomBackward(lambda g: 2 * g)  # values unchanged, gradient doubled
    else:
        model.blocks[1] = _PostNorm(model.blocks[1])
    layers = ["blocks.0.mlp.act", "blocks.1.attn:heads", "blocks.1.mlp.act"]
    got = attribute(model, layers, images, device="cpu")
    ref = attribute_reference(model, layers, images)
    for g, r in zip(got, ref):
        assert abs(g - r).max() <= RTOL * abs(r).max()
    if change == "custom backward":
        assert "to_heads" not in spans and "heads" in spans  # only the pair through the custom op fell back
    else:
        assert spans == []
    notes = describe_paths(model, layers, images)
    assert not notes[0].startswith("transformer block")


def test_open_clip_blocks_take_the_path(spans):
    """open_clip's ResidualAttentionBlock (batch-first nn.MultiheadAttention, identity layer scale)."""
    transformer = pytest.importorskip("open_clip.transformer")
    torch.manual_seed(0)
    model = transformer.VisionTransformer(
        image_size=32, patch_size=8, width=32, layers=3, heads=4, mlp_ratio=2.0, output_dim=8
    ).eval()
    blocks = "transformer.resblocks"
    layers = [
        f"{blocks}.0.attn:heads",
        f"{blocks}.0.mlp.gelu",
        f"{blocks}.1.attn:heads",
        f"{blocks}.1.mlp.gelu",
        f"{blocks}.2.mlp.gelu",
    ]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    got = attribute(model, layers, x, device="cpu")
    ref = attribute_reference(model, layers, x)
    for g, r in zip(got, ref):
        assert abs(g - r).max() <= RTOL * abs(r).max()
    assert spans == ["heads", "to_heads", "heads", "mlp"]


class _LouderInBatches(nn.Module):
    """fc2, scaled by 1.5 on batches of more than one image: the probe (one image) sees the plain
    block, the run's batches another function."""

    def __init__(self, fc2: nn.Linear):
        super().__init__()
        self.fc2 = fc2

    def forward(self, x):
        return self.fc2(x) * (1.0 if x.shape[0] == 1 else 1.5)


def test_a_block_that_changes_after_the_probe_falls_back_on_its_batch(images, spans, forward_grads):
    """Every pair verified: the forward keeps no autograd graph; when a batch does not reproduce
    a block, that pair is redone by autograd on a second forward, and the scores equal the reference."""
    grads = forward_grads
    torch.manual_seed(0)
    model = TinyViT(depth=2).eval()
    layers = ["blocks.0.mlp.act", "blocks.1.attn:heads", "blocks.1.mlp.act"]
    attribute(model, layers, images, device="cpu")
    assert grads == [False] and spans == ["to_heads", "heads"]
    grads.clear(), spans.clear()
    model.blocks[0].mlp.fc2 = _LouderInBatches(model.blocks[0].mlp.fc2)
    got = attribute(model, layers, images, device="cpu")
    assert grads == [False, True] and spans == ["heads"]  # the to_heads pair through fc2 fell back
    for g, r in zip(got, attribute_reference(model, layers, images)):
        assert abs(g - r).max() <= RTOL * abs(r).max()
