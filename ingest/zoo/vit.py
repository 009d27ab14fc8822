"""torchvision's ViT-B/16 and ViT-B/32 in the zoo (docs/architecture.md, "Models"; docs/method.md, "Token models").

Default CLA layers: per encoder block, its attention heads (`…self_attention:heads`, 12 heads of
64 features, `ingest.cla.heads`) then its MLP activation (`…mlp.1`, the GELU, 3,072 neurons), in
forward order. Random init unless weights are given (`--weights imagenet`: torchvision's cache).
"""

from __future__ import annotations

from ingest.zoo.specs import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

__all__ = ["vit_layers", "vit_spec"]


def vit_layers(n_blocks: int, prefix: str = "encoder.layers.encoder_layer_") -> tuple[str, ...]:
    """Per block: attention heads, then MLP activation (torchvision's module names)."""
    return tuple(name for b in range(n_blocks) for name in (f"{prefix}{b}.self_attention:heads", f"{prefix}{b}.mlp.1"))


def vit_spec(patch: int) -> ModelSpec:
    """The zoo entry of torchvision's vit_b_{patch} (patch 16 or 32)."""
    from torchvision.models import vision_transformer as tv

    builder = {16: tv.vit_b_16, 32: tv.vit_b_32}[patch]
    weights = {16: "ViT_B_16_Weights.IMAGENET1K_V1", 32: "ViT_B_32_Weights.IMAGENET1K_V1"}[patch]
    enum = getattr(tv, weights.split(".")[0]).IMAGENET1K_V1
    return ModelSpec(
        name=f"vit-b-{patch}",
        architecture=f"torchvision.models.vit_b_{patch}",
        build=lambda: builder(weights=None),
        layers=vit_layers(12),
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        labels=tuple(enum.meta["categories"]),
        cache_names=(enum.url.rsplit("/", 1)[-1],),
        imagenet_weights=weights,
    )
