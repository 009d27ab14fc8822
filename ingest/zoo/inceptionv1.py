"""InceptionV1 in the Lucid / OpenAI Microscope layout (the TensorFlow "inception5h" graph).

This is the network of the Circuits thread ("Zoom In", "Curve Detectors", …): its block outputs
`mixed3a … mixed5b` have exactly Lucid's channel widths and branch order (1×1, 3×3, 5×5, pool
projection), so neuron ids such as `mixed4c:447` mean the same neuron as in the literature. It
differs from torchvision's GoogLeNet (other widths, local response norm, no batch norm, 1008
outputs: the 1000 ImageNet classes plus unused slots of the original label file).

Parameter names follow the widely used PyTorch port of those weights (Lucent's
`InceptionV1`, from ProGamerGov's conversion): flat names such as
`mixed4c_3x3_pre_relu_conv.weight` and `softmax2_pre_activation_matmul.weight`, so that state
dict loads as is. The weights themselves are not shipped; random init otherwise.

Differences from that port, on purpose: `forward` returns the logits (pre-softmax), and the
final average pool is a global mean, identical at 224×224 and also valid at lower resolution.
Inputs are RGB in Lucid's value range, i.e. `255·x − 117` for x in [0, 1] (the zoo's mean/std
do this).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BLOCKS", "LAYERS", "WIDTHS", "InceptionV1", "Mixed", "build_inceptionv1"]

# name: (in, 1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool projection) — Lucid's graph.
BLOCKS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "mixed3a": (192, 64, 96, 128, 16, 32, 32),
    "mixed3b": (256, 128, 128, 192, 32, 96, 64),
    "mixed4a": (480, 192, 96, 204, 16, 48, 64),
    "mixed4b": (508, 160, 112, 224, 24, 64, 64),
    "mixed4c": (512, 128, 128, 256, 24, 64, 64),
    "mixed4d": (512, 112, 144, 288, 32, 64, 64),
    "mixed4e": (528, 256, 160, 320, 32, 128, 128),
    "mixed5a": (832, 256, 160, 320, 48, 128, 128),
    "mixed5b": (832, 384, 192, 384, 48, 128, 128),
}
LAYERS: tuple[str, ...] = tuple(BLOCKS)
WIDTHS: dict[str, int] = {name: b[1] + b[3] + b[5] + b[6] for name, b in BLOCKS.items()}


def _conv(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=padding, bias=True)


def _stride2_pool() -> nn.MaxPool2d:
    """Lucid's 3×3/2 SAME max pool: padding (0, 1, 0, 1) with −inf equals ceil_mode on any size."""
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class Mixed(nn.Module):
    """One inception block; its output (the channel concat) is the CLA layer `mixedXY`.

    Branches, concatenated in this order: 1×1 | 1×1 → 3×3 | 1×1 → 5×5 | 3×3/1 max pool → 1×1,
    each conv followed by a ReLU. Zero padding sits in the convs and −inf padding in the pool
    (identical to Lucid's explicit pads), so the block is a chain of standard modules.

    Args:
        convs: (1x1, 3x3_bottleneck, 3x3, 5x5_bottleneck, 5x5, pool_reduce), registered on the
            parent under Lucent's flat names. They are kept here in a plain tuple, not as
            submodules, so the state dict has each parameter once, under the flat name.
    """

    def __init__(self, convs: tuple[nn.Conv2d, ...]):
        super().__init__()
        assert len(convs) == 6, "a block has six convolutions"
        self.convs = tuple(convs)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.relus = nn.ModuleList(nn.ReLU() for _ in range(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c3r, c3, c5r, c5, cp = self.convs
        r = self.relus
        b1 = r[0](c1(x))
        b3 = r[2](c3(r[1](c3r(x))))
        b5 = r[4](c5(r[3](c5r(x))))
        bp = r[5](cp(self.pool(x)))
        return torch.cat([b1, b3, b5, bp], dim=1)  # (B, c1 + c3 + c5 + cp, H, W)


class InceptionV1(nn.Module):
    """Lucid's InceptionV1; block outputs are the modules `mixed3a … mixed5b`.

    Args:
        num_classes: outputs of the final linear layer (1008 in Lucid's graph).
    """

    def __init__(self, num_classes: int = 1008):
        super().__init__()
        self.conv2d0_pre_relu_conv = _conv(3, 64, 7, stride=2)
        self.conv2d1_pre_relu_conv = _conv(64, 64, 1)
        self.conv2d2_pre_relu_conv = _conv(64, 192, 3, padding=1)
        self.maxpool0 = _stride2_pool()
        self.maxpool1 = _stride2_pool()
        self.maxpool4 = _stride2_pool()  # before mixed4a
        self.maxpool10 = _stride2_pool()  # before mixed5a
        for name, (cin, c1, c3r, c3, c5r, c5, cp) in BLOCKS.items():
            convs = (
                _conv(cin, c1, 1),
                _conv(cin, c3r, 1),
                _conv(c3r, c3, 3, padding=1),
                _conv(cin, c5r, 1),
                _conv(c5r, c5, 5, padding=2),
                _conv(cin, cp, 1),
            )
            parts = ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce")
            for part, conv in zip(parts, convs):
                setattr(self, f"{name}_{part}_pre_relu_conv", conv)
            setattr(self, name, Mixed(convs))
        self.softmax2_pre_activation_matmul = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits `(B, num_classes)` for images `(B, 3, H, W)` in Lucid's value range."""
        x = F.relu(self.conv2d0_pre_relu_conv(F.pad(x, (2, 3, 2, 3))))  # (B, 64, H/2, W/2)
        x = self.maxpool0(x)
        x = F.local_response_norm(x, size=9, alpha=9.99999974738e-05, beta=0.5, k=1)
        x = F.relu(self.conv2d1_pre_relu_conv(x))
        x = F.relu(self.conv2d2_pre_relu_conv(x))  # (B, 192, H/4, W/4)
        x = F.local_response_norm(x, size=9, alpha=9.99999974738e-05, beta=0.5, k=1)
        x = self.maxpool1(x)  # (B, 192, H/8, W/8)
        for name in LAYERS:
            if name == "mixed4a":
                x = self.maxpool4(x)
            elif name == "mixed5a":
                x = self.maxpool10(x)
            x = getattr(self, name)(x)  # (B, WIDTHS[name], h, w)
        x = x.mean(dim=(2, 3))  # (B, 1024)
        return self.softmax2_pre_activation_matmul(x)


def build_inceptionv1(num_classes: int = 1008) -> InceptionV1:
    """A randomly initialised InceptionV1 (PyTorch's default init)."""
    return InceptionV1(num_classes=num_classes)
