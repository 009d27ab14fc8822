"""The token-MLP path (`ingest.cla.token_mlp`): exact CLA into a transformer block's MLP
activation with fc1's row shared, against the reference loop (docs/method.md, "Token models")."""

from __future__ import annotations

import pytest
import torch
from cla_helpers import CustomBackward
from tiny_vit import TinyViT
from torch import nn

import ingest.cla.attribution as attribution
import ingest.cla.token_mlp as token_mlp_mod
from ingest.cla import attribute, attribute_reference, describe_paths
from ingest.cla.capture import capture
from ingest.cla.generic import reference_pair_scores
from ingest.cla.token_mlp import record_mlp_calls, token_mlp, token_mlp_scores
from ingest.cla.tokens import position_masks

RTOL = 1e-4


@pytest.fixture(autouse=True)
def no_block_path(monkeypatch) -> None:
    """These tests are about the token-MLP path: the transformer-block path, which would take
    these pairs first, is switched off (it is tested in test_cla_vit_block.py)."""
    import ingest.cla.probe as probe_mod

    monkeypatch.setattr(probe_mod, "block_span", lambda *a, **k: None)  # no pair verified as a block span


@pytest.fixture
def spy(monkeypatch) -> list[int]:
    """Counts the pairs the engine sent through the token-MLP path."""
    calls: list[int] = []
    real = attribution.token_mlp_scores

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(attribution, "token_mlp_scores", counted)
    return calls


def _close(got, ref) -> None:
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        scale = float(abs(r).max())
        assert scale > 0
        assert float(abs(g - r).max()) <= RTOL * scale


@pytest.mark.parametrize("tokens", ["all", "patches", "cls"])
@pytest.mark.parametrize("batched", [None, False])
def test_mlp_and_head_units_match_the_reference(vit, images, spy, tokens, batched):
    """Heads → MLP, MLP → heads (generic), MLP → MLP across a whole block: every token selection,
    batched chunks and the per-unit loop."""
    layers = ["blocks.0.attn:heads", "blocks.0.mlp.act", "blocks.1.attn:heads", "blocks.1.mlp.act", "blocks.2.mlp.act"]
    got = attribute(vit, layers, images, device="cpu", tokens=tokens, batched_vjp=batched)
    ref = attribute_reference(vit, layers, images, tokens=tokens)
    _close(got, ref)
    assert len(spy) == 3  # heads0 → act0, heads1 → act1, act1 → act2 (act0 → heads1 is generic)


def test_torchvision_vit_block_pairs_match_the_reference(tv_vit, spy):
    layers = [f"encoder.layers.encoder_layer_{k}.mlp.1" for k in range(3)]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    for tokens in ("all", "patches"):
        _close(
            attribute(tv_vit, layers, x, device="cpu", tokens=tokens),
            attribute_reference(tv_vit, layers, x, tokens=tokens),
        )
    assert len(spy) == 4
    notes = describe_paths(tv_vit, layers, x)
    assert all(n.startswith("token MLP") for n in notes)


def test_chunks_and_loop_agree_with_the_reference_per_pair(tv_vit):
    """The path's own function, one chunk per unit and chunks of many, with token masks, against
    `reference_pair_scores`; a tiny budget forces one unit per chunk."""
    layers = ["encoder.layers.encoder_layer_0.mlp.1", "encoder.layers.encoder_layer_1.mlp.1"]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with capture(tv_vit, layers) as cap, record_mlp_calls(tv_vit, layers) as calls, torch.enable_grad():
        tv_vit(x)
        leaves, outs = cap.leaf_list(), cap.output_list()
        mlp = token_mlp(tv_vit, layers[1], outs[1], calls)
        assert mlp is not None
        masks = position_masks(layers, leaves, "patches")
        neurons = [0, 5, 17, 63]
        ref = reference_pair_scores(outs[1], leaves[0], neurons, (masks[0], masks[1]))[:, neurons]
        for batched, budget in ((True, 1 << 30), (True, 1), (False, 1 << 30)):
            got = token_mlp_scores(
                outs[1],
                leaves[0],
                mlp,
                batched=batched,
                budget_bytes=budget,
                neurons=neurons,
                masks=(masks[0], masks[1]),
            )
            assert float(abs(got[:, neurons] - ref).max()) <= RTOL * float(abs(ref).max())
            others = [n for n in range(64) if n not in neurons]
            assert not got[:, others].any()


def test_a_dead_unit_scores_zero_never_nan(vit, images):
    """A ReLU MLP whose unit is dead on every image: its column is 0, as in the reference."""
    torch.manual_seed(0)
    model = TinyViT(depth=2).eval()
    for b in model.blocks:
        b.mlp.act = nn.ReLU()
    with torch.no_grad():
        model.blocks[1].mlp.fc1.bias[3] = -1e3  # unit 3 never fires
    layers = ["blocks.0.mlp.act", "blocks.1.mlp.act"]
    got = attribute(model, layers, images, device="cpu")
    ref = attribute_reference(model, layers, images)
    _close(got, ref)
    assert not got[0][:, 3].any()


def test_other_structures_take_the_generic_path(images, spy):
    """An activation that is not fed by a Linear (GELU after a LayerNorm): the generic path, same numbers."""

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.a1 = nn.Linear(3 * 16 * 16, 32), nn.GELU()
            self.norm, self.a2 = nn.LayerNorm(32), nn.GELU()

        def forward(self, x):
            h = self.a1(self.fc(x.flatten(1)).unflatten(1, (4, 8)))
            return self.a2(self.norm(h.flatten(1)).unflatten(1, (4, 8)))

    torch.manual_seed(0)
    model = Odd().eval()
    layers = ["a1", "a2"]
    _close(attribute(model, layers, images, device="cpu"), attribute_reference(model, layers, images))
    assert spy == []


def test_sequence_major_attention_inputs_keep_values_and_gradients():
    """The engine's forward stores a batch-first MultiheadAttention's inputs sequence-major: the
    attention output and its input gradient equal the module's own."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(3, 9, 16, requires_grad=True)
    w = torch.randn(3, 9, 16)

    def run(hooked: bool):
        h = mha.register_forward_pre_hook(token_mlp_mod._sequence_major, with_kwargs=True) if hooked else None
        try:
            out = mha(x, x, x, need_weights=False)[0]
        finally:
            if h is not None:
                h.remove()
        (g,) = torch.autograd.grad((out * w).sum(), x)
        return out.detach(), g

    (o1, g1), (o2, g2) = run(False), run(True)
    assert torch.allclose(o1, o2, rtol=0, atol=1e-6)
    assert torch.allclose(g1, g2, rtol=0, atol=1e-6)
    assert g1.abs().max() > 0


def _opaque(g):
    """A backward vmap cannot batch: batched VJPs cannot pass it."""
    assert g.abs().sum().item() >= 0  # `.item()`: vmap refuses it (a RuntimeError under batched VJPs)
    return g.clone()


def test_an_op_vmap_cannot_batch_falls_back_to_one_call_per_unit(vit, images, spy):
    torch.manual_seed(0)
    model = TinyViT(depth=2).eval()
    norm = model.blocks[0].norm2
    model.blocks[0].norm2 = nn.Sequential(norm, CustomBackward(_opaque))
    layers = ["blocks.0.attn:heads", "blocks.0.mlp.act"]
    _close(attribute(model, layers, images, device="cpu"), attribute_reference(model, layers, images))
    assert len(spy) == 1
