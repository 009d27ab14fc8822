"""typo-vit: a small vision transformer trained on Typographic-synth, so it reads (docs/method.md, "Token models").

torchvision's `VisionTransformer` at 64 px with 8-pixel patches (64 patch tokens and a class
token), 6 blocks of width 96, 4 heads of 24 features, MLP width 192, 12 classes; catfish-mini's
preprocessing and class names. Trained by `circuits train typo-vit` with typo-mini's recipe
switches (a share of training images carries the true class name written on it). Default CLA
layers: per block, its heads then its MLP activation (`ingest.zoo.vit.vit_layers`).
"""

from __future__ import annotations

from pathlib import Path

import torch
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
    model = _pooled_vit_class()(
        image_size=int(cm.INPUT_SIZE),
        patch_size=PATCH,
        num_layers=DEPTH,
        num_heads=HEADS,
        hidden_dim=WIDTH,
        mlp_dim=MLP_WIDTH,
        num_classes=num_classes,
    )
    # A convolutional stem in place of the one-layer patch embedding ("early convolutions help
    # transformers see better", Xiao et al. 2021): three stride-2 3×3 convolutions, then a 1×1
    # to the width, so each token still covers one 8×8 patch. With the plain patch embedding the
    # loss stayed at ln 12 for the whole budget on 2 CPU cores (measured; docs/results.md).
    model.conv_proj = nn.Sequential(
        nn.Conv2d(3, 24, 3, stride=2, padding=1),
        nn.BatchNorm2d(24),
        nn.ReLU(),
        nn.Conv2d(24, 48, 3, stride=2, padding=1),
        nn.BatchNorm2d(48),
        nn.ReLU(),
        nn.Conv2d(48, 96, 3, stride=2, padding=1),
        nn.BatchNorm2d(96),
        nn.ReLU(),
        nn.Conv2d(96, WIDTH, 1),
    )
    return model


def _pooled_vit_class():
    from torchvision.models.vision_transformer import VisionTransformer

    class PooledViT(VisionTransformer):
        """torchvision's ViT read out by the mean of the patch tokens instead of the class token
        (the class token is kept and attends as usual): with a class-token readout the loss
        stayed at ln 12 for the whole CPU budget (measured; docs/results.md)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self._process_input(x)  # (B, T-1, D)
            x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, T, D)
            x = self.encoder(x)
            return self.heads(x[:, 1:].mean(dim=1))  # (B, classes)

    return PooledViT


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
