"""catfish-mini: a small InceptionV1-style network for CatFish-synth (docs/architecture.md, "Models").

Layout (64x64 input), with the CLA layers (cuts of the network) in brackets:

    [stem]     5x5/2 conv 24 -> 3x3/2 maxpool -> 1x1 conv 32 -> 3x3 conv 64      (64, 16, 16)
    [mixed3a]  inception: 1x1 16 | 1x1 24 -> 3x3 32 | 1x1 8 -> 5x5 8 | pool -> 1x1 8   (64, 16, 16)
    [mixed3b]  inception: 1x1 24 | 1x1 32 -> 3x3 48 | 1x1 8 -> 5x5 12 | pool -> 1x1 12 (96, 16, 16)
    pool3      3x3/2 maxpool                                                         (96, 8, 8)
    [mixed4a]  inception: 1x1 32 | 1x1 32 -> 3x3 64 | 1x1 12 -> 5x5 16 | pool -> 1x1 16 (128, 8, 8)
    [mixed4b]  inception: 1x1 32 | 1x1 48 -> 3x3 64 | 1x1 12 -> 5x5 16 | pool -> 1x1 16 (128, 8, 8)
    avgpool -> dropout -> fc (12 logits)

Every conv is `BasicConv2d` (Conv2d without bias, BatchNorm2d, ReLU) as in torchvision's GoogLeNet,
and an inception block is torchvision's `Inception` layout: `branch1`, `branch2[0..1]`,
`branch3[0..1]`, `branch4[0..1]` (maxpool, 1x1), concatenated along channels in that order, with
no path around a block, so each named layer is computed from the previous one alone.

Trained weights ship as `WEIGHTS_PATH` (made by `circuits train catfish`; see the .json beside it);
load them with `ingest.zoo.registry.load_model("catfish-mini")`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ingest.datasets.catfish import CLASS_NAMES, IMAGE_SIZE

__all__ = [
    "CATFISH_MINI_LAYERS",
    "CATFISH_MINI_LOGITS",
    "CLASS_NAMES",
    "INPUT_SIZE",
    "MEAN",
    "STD",
    "WEIGHTS_PATH",
    "BasicConv2d",
    "CatFishMini",
    "Inception",
    "build_catfish_mini",
    "preprocess",
]

INPUT_SIZE = IMAGE_SIZE  # square RGB input, pixels
MEAN = (0.5, 0.5, 0.5)  # the images are mid-grey clutter with saturated primitives
STD = (0.25, 0.25, 0.25)
CATFISH_MINI_LAYERS: tuple[str, ...] = ("stem", "mixed3a", "mixed3b", "mixed4a", "mixed4b")
CATFISH_MINI_LOGITS = "fc"  # the output layer (B, num_classes), for anchoring class circuits
WEIGHTS_PATH = Path(__file__).resolve().parent.parent / "weights" / "catfish_mini.pt"


class BasicConv2d(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU, named like torchvision's `BasicConv2d`."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU()  # not in place, so hooks may replace a conv's output safely

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """An InceptionV1 block: 1x1 | 1x1->3x3 | 1x1->5x5 | maxpool->1x1, concatenated."""

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=5, padding=2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x))
        return torch.cat(branches, dim=1)  # (B, out_channels, H, W)


class CatFishMini(nn.Module):
    """The catfish-mini network; see the module docstring for its layout."""

    def __init__(self, num_classes: int = len(CLASS_NAMES), dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            BasicConv2d(3, 24, kernel_size=5, stride=2, padding=2),  # (B, 24, 32, 32)
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),  # (B, 24, 16, 16)
            BasicConv2d(24, 32, kernel_size=1),
            BasicConv2d(32, 64, kernel_size=3, padding=1),  # (B, 64, 16, 16)
        )
        self.mixed3a = Inception(64, 16, 24, 32, 8, 8, 8)  # (B, 64, 16, 16)
        self.mixed3b = Inception(64, 24, 32, 48, 8, 12, 12)  # (B, 96, 16, 16)
        self.pool3 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # (B, 96, 8, 8)
        self.mixed4a = Inception(96, 32, 32, 64, 12, 16, 16)  # (B, 128, 8, 8)
        self.mixed4b = Inception(128, 32, 48, 64, 12, 16, 16)  # (B, 128, 8, 8)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.mixed3a(x)
        x = self.mixed3b(x)
        x = self.pool3(x)
        x = self.mixed4a(x)
        x = self.mixed4b(x)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 128)
        return self.fc(self.dropout(x))  # (B, num_classes)


def build_catfish_mini(num_classes: int = len(CLASS_NAMES)) -> CatFishMini:
    """A randomly initialised catfish-mini (seed torch first for a reproducible init).

    Args:
        num_classes: number of output logits (the CatFish-synth classes by default).

    Returns:
        The model, in training mode, on CPU.
    """
    return CatFishMini(num_classes)


def preprocess(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 images (N, H, W, 3) -> normalised float32 tensor (N, 3, H, W) for catfish-mini.

    Args:
        images: RGB images of side `INPUT_SIZE`, e.g. from `render_concept`.
        device: where to put the tensor.

    Returns:
        float32 tensor (N, 3, INPUT_SIZE, INPUT_SIZE).
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, H, W) in [0, 1]
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
