"""Tiny random models shared by the CLA tests, and which attribution path each one takes.

Plain conv stack, inception blocks (with ReLU modules, and torchvision-style functional in-place
ReLUs), residual bottlenecks; every BatchNorm has non-trivial eval statistics.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cla_helpers import (
    seeded,
    verified_fast_paths,  # noqa: F401 (an autouse fixture: fast plans are tested here)
)
from torch import nn
from torchvision.models.resnet import Bottleneck


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and on a loaded shared CPU OpenMP threads that spin
    waiting for each other made these tests ~10x slower (65 s instead of 6 s here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Unit(nn.Module):
    """conv → BN → ReLU with a ReLU module."""

    def __init__(self, cin: int, cout: int, **kw) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class TVUnit(nn.Module):
    """torchvision's BasicConv2d: conv → BN → functional in-place ReLU (invisible to hooks)."""

    def __init__(self, cin: int, cout: int, **kw) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """1×1 | 1×1→3×3 | 1×1→5×5 | maxpool→1×1, concatenated."""

    def __init__(self, cin: int, c1: int, r3: int, c3: int, r5: int, c5: int, cp: int, unit=Unit) -> None:
        super().__init__()
        self.branch1 = unit(cin, c1, kernel_size=1)
        self.branch2 = nn.Sequential(unit(cin, r3, kernel_size=1), unit(r3, c3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(unit(cin, r5, kernel_size=1), unit(r5, c5, kernel_size=5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), unit(cin, cp, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionNet(nn.Module):
    """stem → block a → block b → maxpool → block c → head; layers stem, a, b, c."""

    def __init__(self, unit=Unit) -> None:
        super().__init__()
        self.stem = nn.Sequential(unit(3, 12, kernel_size=3, padding=1), unit(12, 16, kernel_size=3, padding=1))
        self.a = Inception(16, 6, 4, 8, 3, 4, 4, unit)  # 22 channels
        self.b = Inception(22, 8, 6, 10, 3, 5, 5, unit)  # 28
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.c = Inception(28, 8, 6, 12, 4, 6, 6, unit)  # 32
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        x = self.b(self.a(self.stem(x)))
        x = self.c(self.pool(x))
        return self.fc(x.mean((2, 3)))


INCEPTION_LAYERS = ["stem", "a", "b", "c"]


def conv_stack() -> nn.Sequential:
    """Plain conv stack; cuts are the ReLU modules 1, 4, 8, 11, 15.

    11 follows a stride-2 conv (generic path); 11 → 15 is a chain of two units, a stride-2 3×3
    conv then a dilated 3×3 conv.
    """
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),  # 0, 1
        nn.Conv2d(8, 12, 3, padding=1),
        nn.BatchNorm2d(12),
        nn.ReLU(),  # 2, 3, 4
        nn.MaxPool2d(2),
        nn.Conv2d(12, 10, 5, padding=2),
        nn.BatchNorm2d(10),
        nn.ReLU(),  # 5..8
        nn.Conv2d(10, 9, 3, stride=2, padding=1),
        nn.BatchNorm2d(9),
        nn.ReLU(),  # 9, 10, 11
        nn.Conv2d(9, 8, 3, stride=2, padding=1),
        nn.ReLU(),  # 12, 13
        nn.Conv2d(8, 6, 3, padding=2, dilation=2),
        nn.ReLU(),  # 14, 15
    )


STACK_LAYERS = ["1", "4", "8", "11", "15"]


class TinyResNet(nn.Module):
    """Residual bottleneck stages (torchvision's Bottleneck); layers stem, layer1, layer2."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = nn.Sequential(Bottleneck(16, 4), Bottleneck(16, 4))  # 16 channels
        down = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32))
        self.layer2 = nn.Sequential(Bottleneck(16, 8, stride=2, downsample=down), Bottleneck(32, 8))  # 32

    def forward(self, x):
        return self.layer2(self.layer1(self.stem(x))).mean((2, 3))


RESNET_LAYERS = ["stem", "layer1", "layer2"]


def _images(n: int = 2, size: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_inception_blocks_take_the_fast_path():
    from ingest.cla.attribution import describe_paths

    for unit in (Unit, TVUnit):
        notes = describe_paths(seeded(lambda: InceptionNet(unit)), INCEPTION_LAYERS, _images(1))  # noqa: B023 (called here)
        assert all(n.startswith("fast: inception-style block") for n in notes), notes
        assert "prefix maxpool" in notes[2] and "prefix" not in notes[1]
        assert "conv5x5+bn+relu" in notes[0]


def test_conv_stack_takes_chain_paths_and_falls_back_on_a_strided_last_conv():
    from ingest.cla.attribution import describe_paths

    notes = describe_paths(seeded(conv_stack), STACK_LAYERS, _images(1))
    assert notes[0].startswith("fast: conv chain") and notes[1].startswith("fast: conv chain")
    assert "maxpool" in notes[1]
    assert notes[2].startswith("generic"), notes[2]
    assert notes[3].startswith("fast: conv chain: conv3x3+relu > conv3x3+relu;"), notes[3]


def test_catfish_mini_blocks_take_the_fast_path_and_match_the_reference():
    from ingest.cla.attribution import attribute, describe_paths
    from ingest.cla.reference import attribute_reference
    from ingest.zoo.catfish_mini import CATFISH_MINI_LAYERS, build_catfish_mini

    model = seeded(build_catfish_mini, 3)
    layers, x = list(CATFISH_MINI_LAYERS), _images(2, size=32)
    notes = describe_paths(model, layers, x)
    assert all(n.startswith("fast: inception-style block") for n in notes), notes
    assert "prefix maxpool" in notes[2]
    fast = attribute(model, layers, x)
    cols = [list(range(0, s.shape[1], 3)) for s in fast]
    ref = attribute_reference(model, layers, x, neurons=cols)
    for f, r, c in zip(fast, ref, cols):
        assert np.abs(f[:, c] - r[:, c]).max() <= 1e-4 * np.abs(r[:, c]).max()


def test_residual_stages_take_the_generic_path():
    from ingest.cla.attribution import describe_paths

    notes = describe_paths(seeded(TinyResNet), RESNET_LAYERS, _images(1))
    assert all(n.startswith("generic") for n in notes), notes
