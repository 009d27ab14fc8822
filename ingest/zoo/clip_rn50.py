"""CLIP RN50 image tower (OpenAI's ModifiedResNet, as in open_clip), without an open_clip dependency.

Differences from torchvision's ResNet-50, as in CLIP: a 3-convolution stem with an average pool
instead of a max pool; anti-aliased strided bottlenecks (stride done by an average pool before
the last 1×1 convolution, and in the downsample path); an attention pool instead of global
average pooling, producing the 1024-d image embedding.

Parameter names equal open_clip's `visual.` submodule (and OpenAI's `visual.`), so a state dict
of either loads after stripping the `visual.` prefix (`strip_visual_prefix`). `forward` returns
the image embedding `(B, 1024)`, not class logits. CLA layers are `layer1 … layer4`.

One extension: at a resolution other than 224 the attention pool's positional embedding is
resized bicubically (unchanged at 224), so low-resolution inputs work for tests.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LAYERS", "AttentionPool2d", "Bottleneck", "ModifiedResNet", "build_clip_rn50", "strip_visual_prefix"]

BLOCKS = (3, 4, 6, 3)  # bottleneck blocks per stage (RN50)
LAYERS: tuple[str, ...] = tuple(f"layer{s + 1}.{b}" for s, n in enumerate(BLOCKS) for b in range(n))
"""Default CLA cuts: every residual block's output (16 cuts). With stage outputs as cuts, several
blocks sit between two cuts and one downstream channel's gradient spreads over every channel in
between (only autograd can follow it); with block outputs, one block sits between cuts and CLA
takes the residual fast path (`ingest.cla.residual`)."""
STAGE_LAYERS: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")


class Bottleneck(nn.Module):
    """1×1 → 3×3 → (avg pool if strided) → 1×1, plus a downsampled identity."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU()
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.act3 = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride)),
                        ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
                        ("1", nn.BatchNorm2d(planes * self.expansion)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.act3(out + identity)  # out of place: a hooked (leaf) input stays untouched


class AttentionPool2d(nn.Module):
    """QKV attention of the mean token over all spatial tokens; returns the mean token's output."""

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int | None = None):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spacial_dim**2 + 1, embed_dim) / embed_dim**0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)
        self.num_heads = num_heads

    def _positional(self, h: int, w: int) -> torch.Tensor:
        pos = self.positional_embedding  # (1 + S², D)
        side = int(round((pos.shape[0] - 1) ** 0.5))
        if (h, w) == (side, side):
            return pos
        grid = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, D, S, S)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(h * w, -1)])  # (1 + h·w, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, c, h * w).permute(2, 0, 1)  # (HW, B, C)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)  # (HW+1, B, C)
        x = x + self._positional(h, w)[:, None, :].to(x.dtype)
        x, _ = F.multi_head_attention_forward(
            query=x[:1],
            key=x,
            value=x,
            embed_dim_to_check=x.shape[-1],
            num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight,
            k_proj_weight=self.k_proj.weight,
            v_proj_weight=self.v_proj.weight,
            in_proj_weight=None,
            in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None,
            bias_v=None,
            add_zero_attn=False,
            dropout_p=0.0,
            out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias,
            use_separate_proj_weight=True,
            training=self.training,
            need_weights=False,
        )
        return x[0]  # (B, output_dim)


class ModifiedResNet(nn.Module):
    """CLIP's ResNet image encoder.

    Args:
        layers: bottlenecks per stage ((3, 4, 6, 3) for RN50).
        output_dim: embedding size (1024 for RN50).
        heads: attention-pool heads (32 for RN50).
        image_size: training resolution; sets the positional embedding's grid (image_size // 32).
        width: stem width (64 for RN50).
    """

    def __init__(
        self, layers=(3, 4, 6, 3), output_dim: int = 1024, heads: int = 32, image_size: int = 224, width: int = 64
    ):
        super().__init__()
        self.output_dim = output_dim
        self.image_size = image_size
        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.act2 = nn.ReLU()
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.act3 = nn.ReLU()
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.attnpool = AttentionPool2d(image_size // 32, width * 32, heads, output_dim)
        self.init_parameters()

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def init_parameters(self) -> None:
        """CLIP's init: scaled normal attention-pool projections, zero-initialised last BN of each block."""
        std = self.attnpool.c_proj.in_features**-0.5
        for proj in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj, self.attnpool.c_proj):
            nn.init.normal_(proj.weight, std=std)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for name, param in stage.named_parameters():
                if name.endswith("bn3.weight"):
                    nn.init.zeros_(param)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.act3(self.bn3(self.conv3(x)))
        return self.avgpool(x)  # (B, width, H/4, W/4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image embeddings `(B, output_dim)` for images `(B, 3, H, W)`, H and W multiples of 32."""
        x = self.stem(x)
        x = self.layer1(x)  # (B, 256, H/4, W/4)
        x = self.layer2(x)  # (B, 512, H/8, W/8)
        x = self.layer3(x)  # (B, 1024, H/16, W/16)
        x = self.layer4(x)  # (B, 2048, H/32, W/32)
        return self.attnpool(x)


def build_clip_rn50() -> ModifiedResNet:
    """A randomly initialised CLIP RN50 image tower (CLIP's init)."""
    return ModifiedResNet(layers=(3, 4, 6, 3), output_dim=1024, heads=32, image_size=224, width=64)


def strip_visual_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image tower's entries of a full CLIP state dict, with `visual.` removed.

    A state dict without `visual.` keys is returned unchanged (already the tower's own).
    """
    if any(k.startswith("visual.") for k in state_dict):
        return {k[len("visual.") :]: v for k, v in state_dict.items() if k.startswith("visual.")}
    return dict(state_dict)
