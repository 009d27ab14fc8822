"""Source files of small user models for the `file.py:build` tests: two 3x3 convolutions `c1`
(3 → 4 channels) and `c2` (4 → 4), and a forward pass each test writes for itself."""

from __future__ import annotations

import textwrap

_TEMPLATE = """
{imports}from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3)
        self.c2 = nn.Conv2d(4, 4, 3){head}

    def forward(self, x):
{forward}

def build():
    return Net()
"""


def two_conv_model(forward: str, *, head: bool = False, imports: str = "") -> str:
    """The source of a model file whose `build()` returns the two-convolution `Net`.

    Args:
        forward: the body of `forward(self, x)`, unindented.
        head: give the net a 2-class head (`self.head`: pool, flatten, linear) for a classifier.
        imports: lines put before `from torch import nn` (e.g. "import os\\n").
    """
    head_line = "\n        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))"
    body = textwrap.indent(textwrap.dedent(forward).strip("\n"), " " * 8)
    return _TEMPLATE.format(imports=imports, head=head_line if head else "", forward=body)
