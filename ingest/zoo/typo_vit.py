"""typo-vit: a small vision transformer trained on Typographic-synth, so it reads (docs/method.md, "Token models").

torchvision's `VisionTransformer` at 64 px with 8-pixel patches (64 patch tokens and a class
token), 6 blocks of width 96, 4 heads of 24 features, MLP width 192, 12 classes; catfish-mini's
preprocessing and class names. Trained by `circuits train typo-vit` with typo-mini's recipe
switches (a share of training images carries the true class name written on it). Default CLA
layers: per block, its heads then its MLP activation (`ingest.zoo.vit.vit_layers`).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ingest.zoo import catfish_mini as cm
from ingest.zoo.vit import vit_layers

__all__ = ["TYPO_VIT_LAYERS", "TYPO_VIT_LOGITS", "WEIGHTS_PATH", "build_typo_vit", "spec"]

DEPTH, WIDTH, HEADS, MLP_WIDTH, PATCH = 6, 96, 4, 192, 8  # small enough to train in ~15 min on 2 shared cores
TYPO_VIT_LAYERS = vit_layers(DEPTH)
TYPO_VIT_LOGITS = "heads.head"
WEIGHTS_PATH = Path(__file__).resolve().parent.parent / "weights" / "typo_vit.pt"


def build_typo_vit(num_classes: int = len(cm.CLASS_NAMES)) -> nn.Module:
    """A randomly initialised typo-vit (seed torch first for a reproducible init)."""
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        image_size=int(cm.INPUT_SIZE),
        patch_size=PATCH,
        num_layers=DEPTH,
        num_heads=HEADS,
        hidden_dim=WIDTH,
        mlp_dim=MLP_WIDTH,
        num_classes=num_classes,
    )


def spec():
    """The zoo entry of typo-vit (an `ingest.zoo.registry.ModelSpec`)."""
    from ingest.zoo.registry import ModelSpec

    return ModelSpec(
        name="typo-vit",
        architecture=f"ViT ({DEPTH} blocks, width {WIDTH}, {HEADS} heads, patch {PATCH}), trained on Typographic-synth",
        build=build_typo_vit,
        layers=TYPO_VIT_LAYERS,
        input_size=int(cm.INPUT_SIZE),
        mean=tuple(cm.MEAN),
        std=tuple(cm.STD),
        labels=tuple(cm.CLASS_NAMES),
        default_weights=WEIGHTS_PATH,
    )
