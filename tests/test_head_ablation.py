"""Head ablation (ingest.defence.head_ablation): ranking, zero/mean ablation, random heads."""

from __future__ import annotations

import pytest
import torch
from tiny_vit import TinyViT

from ingest.defence.head_ablation import HeadAblationError, ablate_heads, head_means, random_heads, rank_heads
from ingest.hooks import scoped_hooks

LAYERS = ["blocks.0.attn:heads", "blocks.1.attn:heads"]


@pytest.fixture(scope="module")
def vit() -> TinyViT:
    torch.manual_seed(0)
    return TinyViT().eval()


def test_rank_heads_by_the_change_the_word_makes(vit):
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[:, :, :4, :4] += 2.0  # "a word" in the top-left patch
    ranked = rank_heads(vit, LAYERS, y, x)
    assert len(ranked) == 8 and all(a[1] >= b[1] for a, b in zip(ranked, ranked[1:]))
    seen: dict[str, list[torch.Tensor]] = {}

    def keep(name: str):
        return lambda m, a, z: seen.setdefault(name, []).append(z)

    with scoped_hooks(vit, {n: keep(n) for n in LAYERS}):
        with torch.no_grad():
            vit(y)
            vit(x)
    (layer, h), score = ranked[0]
    za, zb = seen[layer][0][:, h], seen[layer][1][:, h]
    want = ((za - zb).flatten(1).norm(dim=1) / zb.flatten(1).norm(dim=1)).mean()
    assert score == pytest.approx(float(want), rel=1e-5)
    assert rank_heads(vit, LAYERS, x, x)[0][1] == 0.0
    with pytest.raises(HeadAblationError, match="paired images differ"):
        rank_heads(vit, LAYERS, x, x[:2])


def test_zero_and_mean_ablation(vit):
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    w = vit.blocks[1].attn.proj.weight
    with torch.no_grad():
        with ablate_heads(vit, [("blocks.1.attn:heads", 2)]):
            zeroed = vit(x)
        saved = w[:, 8:12].clone()
        w[:, 8:12] = 0
        baked = vit(x)
        w[:, 8:12] = saved
        means = head_means(vit, LAYERS, x)
        assert means["blocks.1.attn:heads"].shape == (4, 17, 4)
        with ablate_heads(vit, [("blocks.1.attn:heads", 2)], means=means):
            mean_ablated = vit(x)
        clean = vit(x)
    assert torch.allclose(zeroed, baked, atol=1e-6)
    assert not torch.allclose(mean_ablated, zeroed, atol=1e-4)
    assert not torch.allclose(mean_ablated, clean, atol=1e-4)
    with pytest.raises(HeadAblationError, match="no mean output"):
        with ablate_heads(vit, [("blocks.0.attn:heads", 0)], means={}):
            pass


def test_random_heads_are_distinct_and_seeded():
    a = random_heads(LAYERS, [4, 4], 5, seed=3)
    assert len(set(a)) == 5 and a == random_heads(LAYERS, [4, 4], 5, seed=3)
    assert a != random_heads(LAYERS, [4, 4], 5, seed=4)
    with pytest.raises(HeadAblationError):
        random_heads(LAYERS, [4, 4], 9, seed=0)
