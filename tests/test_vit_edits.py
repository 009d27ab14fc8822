"""Edits on transformers (docs/method.md, "Interventions"): circuit and edge pruning with head and
MLP units, masks with head units, and baking them exactly (head: its slice of the output
projection; MLP neuron: fc1's row and fc2's column)."""

from __future__ import annotations

import pytest
import torch
from tiny_vit import TinyViT
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from catalog.mask_file import Mask, MaskError, ModelIdentity, ModuleMask
from ingest.edit.mask_apply import apply_mask, bake_mask, check, plan_bake, verify_bake
from ingest.edit.prune import prune_circuit, prune_edges
from ingest.zoo.weights import weights_sha256

BAKED_TOLERANCE = 1e-6


def _tv_vit() -> VisionTransformer:
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=5
    ).eval()
    nn.init.normal_(model.heads.head.weight)  # torchvision starts it at zero
    return model


def _tiny() -> TinyViT:
    torch.manual_seed(0)
    return TinyViT().eval()


CASES = {
    "torchvision": (
        _tv_vit,
        32,
        {
            "encoder.layers.encoder_layer_0.self_attention:heads": ((1, 3), 4),
            "encoder.layers.encoder_layer_1.mlp.1": ((0, 5, 7), 64),
        },
    ),
    "qkv/proj": (_tiny, 16, {"blocks.0.attn:heads": ((2,), 4), "blocks.1.mlp.act": ((3, 4, 30), 32)}),
}


def _mask(model: nn.Module, modules: dict) -> Mask:
    return Mask(
        kind="circuit",
        model=ModelIdentity("m", weights_sha256(model)),
        modules={p: ModuleMask(tuple(c), w) for p, (c, w) in modules.items()},
    )


@pytest.mark.parametrize("case", CASES)
def test_baked_equals_hooked_for_heads_and_mlp_neurons(case):
    build, size, modules = CASES[case]
    model, x = build(), torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(2))
    mask = _mask(model, modules)
    check(model, mask, example=x)
    plan = plan_bake(model, mask)
    assert set(plan.routes.values()) == {"transformer"}
    head_path, mlp_path = list(modules)
    hd = 8 if case == "torchvision" else 4
    head_edits = [e for e in plan.edits if e.axis == 1 and e.param.endswith(("out_proj.weight", "proj.weight"))]
    assert sorted(e.channel for e in head_edits) == sorted(
        c for h in modules[head_path][0] for c in range(h * hd, (h + 1) * hd)
    )
    state = bake_mask(model, mask)
    with torch.no_grad():
        clean = model(x)
        with apply_mask(model, mask):
            hooked = model(x)
    assert (hooked - clean).abs().max() > 1e-3  # the mask does something
    # relative to the logits' scale: torch's fused attention and the hook's correction round
    # differently (a few float32 ulps of logits ~10: 3e-6 absolute, 2e-7 relative, measured)
    assert verify_bake(model, mask, state, x) <= BAKED_TOLERANCE * float(clean.abs().max())


def test_edge_pruning_between_heads_and_mlp():
    model, x = _tiny(), torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    layers = ["blocks.0.attn:heads", "blocks.0.mlp.act"]
    chans = [[0, 2], [1, 5, 9]]
    with torch.no_grad():
        clean = model(x)
        with prune_edges(model, layers, chans, pair=0):
            edge = model(x)
        with prune_circuit(model, layers, chans):
            circuit = model(x)
        # by hand: the MLP neurons 1, 5, 9 computed with heads 0 and 2 zeroed, everything else clean
        with prune_circuit(model, layers[:1], chans[:1]):
            seen = {}
            h = model.blocks[0].mlp.act.register_forward_hook(lambda m, a, o: seen.setdefault("y", o))
            model(x)
            h.remove()

        def splice(m, a, o):
            o = o.clone()
            o[..., chans[1]] = seen["y"][..., chans[1]]
            return o

        h = model.blocks[0].mlp.act.register_forward_hook(splice)
        by_hand = model(x)
        h.remove()
    assert (edge - clean).abs().max() > 1e-4
    assert (edge - circuit).abs().max() > 1e-4
    assert torch.allclose(edge, by_hand, atol=1e-6)


def test_head_masks_and_cnn_masks_do_not_cross():
    vit = _tiny()
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU())
    heads_on_cnn = Mask("circuit", ModelIdentity("m", weights_sha256(cnn)), {"1:heads": ModuleMask((0,), 4)})
    with pytest.raises(MaskError, match="head units on 1:heads.*not an attention module"):
        check(cnn, heads_on_cnn)
    cnn_on_vit = Mask("circuit", ModelIdentity("m", weights_sha256(vit)), {"1": ModuleMask((0,), 4)})
    with pytest.raises(MaskError, match="does not have: 1"):
        check(vit, cnn_on_vit)
    wrong_width = _mask(vit, {"blocks.0.attn:heads": ((0,), 6)})
    with pytest.raises(MaskError, match="4 heads but the mask was made for a width of 6"):
        plan_bake(vit, wrong_width)
