"""What a bake is made of, shared by the CNN planner (`ingest.edit.bake_plan`) and the transformer
one (`ingest.edit.token_bake`): the weight edit, the refusal, and the modules that keep a zero a zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from catalog.mask_file import MaskError

__all__ = ["ZERO_KEEPING_MODULES", "Edit", "NotBakeable"]

# Neurons are channels of (B, C, H, W) maps (dim 1) or features of (B, C) / (B, N, D) outputs (the
# last dim), as ingest.edit.interventions counts them. So the layers that may make or read a masked
# channel are Conv2d/BatchNorm2d (dim 1 of a 4-D map) and Linear (the last dim); 1-D and 3-D convs
# would put channels where the hooks do not look.
ZERO_KEEPING_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout,
    nn.Dropout2d,
)  # f(0) = 0, channel by channel


class NotBakeable(MaskError):
    """A mask that cannot be baked into weights exactly (the hooks still apply it)."""


@dataclass(frozen=True)
class Edit:
    """Zero one output channel (axis 0: `param[channel]`) or input channel (axis 1:
    `param[rows, channel]`, all rows unless a grouped conv limits them to the channel's group)."""

    param: str  # state-dict key
    axis: int
    channel: int
    rows: tuple[int, int] | None = None
