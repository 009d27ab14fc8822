"""The residual-block fast path (`ingest.cla.residual`) against autograd (`attribute_reference`).

Small random-init nets, every BatchNorm with non-trivial eval statistics, cut at block outputs:
torchvision bottlenecks and basic blocks (identity and strided 1×1 downsample skips), CLIP's
modified ResNet (average pools in the residual branch and before the downsample conv), and
MobileNetV2 inverted residuals (ReLU6, depthwise convs, no activation after the add).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from cla_helpers import images as _images
from cla_helpers import (
    rel_err,
    seeded,
    verified_fast_paths,  # noqa: F401 (an autouse fixture: fast plans are tested here)
)
from test_cla_models import RESNET_LAYERS, TinyResNet
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

import ingest.cla.residual as cla_residual
from ingest.cla.attribution import attribute, describe_paths
from ingest.cla.reference import attribute_reference
from ingest.zoo.clip_rn50 import ModifiedResNet


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads; spinning OpenMP threads slow a loaded shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ResNetish(nn.Module):
    """stem → two stride-1 blocks → a stride-2 block with a 1×1 downsample → one more block."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck]) -> None:
        super().__init__()
        e = block.expansion
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = nn.Sequential(block(16, 16 // e), block(16, 16 // e))
        down = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32))
        self.layer2 = nn.Sequential(block(16, 32 // e, stride=2, downsample=down), block(32, 32 // e))

    def forward(self, x):
        return self.layer2(self.layer1(self.stem(x))).mean((2, 3))


BLOCK_LAYERS = ["stem", "layer1.0", "layer1.1", "layer2.0", "layer2.1"]
CLIP_LAYERS = ["layer1.0", "layer2.0", "layer2.1", "layer3.0", "layer4.0", "attnpool"]


def images(n: int = 2, size: int = 16, seed: int = 1) -> torch.Tensor:
    return _images(n, size, seed)


def tiny_clip() -> ModifiedResNet:
    return ModifiedResNet(layers=(1, 2, 1, 1), output_dim=16, heads=4, image_size=32, width=8)


@pytest.mark.parametrize("block", [Bottleneck, BasicBlock], ids=["bottleneck", "basic"])
def test_torchvision_blocks_take_the_residual_path_and_match_autograd(block):
    model, x = seeded(lambda: ResNetish(block), 3), images(3, seed=3)
    notes = describe_paths(model, BLOCK_LAYERS, x)
    assert all(n.startswith("fast: residual block, relu after") for n in notes[1:]), notes
    assert "+ (identity)" in notes[1] and "+ (conv1x1+bn)" in notes[2] + notes[3], notes
    assert rel_err(attribute(model, BLOCK_LAYERS, x, batch_size=2), attribute_reference(model, BLOCK_LAYERS, x)) <= 1e-4


def test_clip_blocks_with_average_pools_match_autograd():
    model, x = seeded(tiny_clip, 4), images(2, size=32, seed=4)
    notes = describe_paths(model, CLIP_LAYERS, x)
    assert all(n.startswith("fast: residual block") for n in notes[:-1]), notes
    assert "avgpool > conv1x1+bn) + (avgpool > conv1x1+bn)" in notes[0], notes[0]
    assert notes[-1].startswith("generic"), "the attention pool takes autograd"
    assert rel_err(attribute(model, CLIP_LAYERS, x), attribute_reference(model, CLIP_LAYERS, x)) <= 1e-4


def test_mobilenet_inverted_residuals_match_autograd():
    from torchvision.models import mobilenet_v2

    model, x = seeded(lambda: mobilenet_v2(width_mult=0.25), 5), images(2, size=32, seed=5)
    layers = ["features.1", "features.2", "features.3", "features.4", "features.5"]
    notes = describe_paths(model, layers, x)
    assert notes[1].startswith("fast: residual block, no activation after") and "relu6" in notes[1], notes
    assert notes[0].startswith("fast: conv chain"), notes  # a block without its skip
    assert rel_err(attribute(model, layers, x), attribute_reference(model, layers, x)) <= 1e-4


def test_efficientnet_lite_blocks_take_fast_paths_and_match_autograd():
    """Stride-1 SAME convolutions read as plain padded convs; a skip-less block is a conv chain."""
    from ingest.zoo.efficientnet_lite import build_efficientnet_lite0

    model, x = seeded(build_efficientnet_lite0, 9), images(2, size=64, seed=9)
    layers = ["_blocks.4", "_blocks.5", "_blocks.6", "_blocks.7", "_blocks.8"]
    notes = describe_paths(model, layers, x)
    assert notes[0].startswith("fast: conv chain") and "conv3x3/g240" in notes[0], notes  # stride 2, asymmetric SAME
    assert notes[1].startswith("fast: residual block, no activation after") and "relu6" in notes[1], notes
    assert notes[3].startswith("fast: conv chain") and "conv5x5/g480" in notes[3], notes
    assert rel_err(attribute(model, layers, x), attribute_reference(model, layers, x)) <= 1e-4


def test_a_reading_that_fails_the_gradient_check_gives_way_to_the_next():
    """Random-init EfficientNet-Lite0: the last block's output is non-negative on the probe, so the
    conv chain read with a final ReLU reproduces it too; only the gradient check tells them apart."""
    from ingest.zoo.efficientnet_lite import build_efficientnet_lite0

    torch.manual_seed(0)
    model, x = build_efficientnet_lite0().eval(), images(2, size=64, seed=10)
    layers = ["_blocks.14", "_blocks.15"]
    note = describe_paths(model, layers, x)[0]
    assert note.startswith("fast: conv chain") and note.split(";")[0].endswith("conv1x1+bn"), note
    assert rel_err(attribute(model, layers, x), attribute_reference(model, layers, x)) <= 1e-4


def test_a_tiny_budget_runs_one_pair_per_chunk_with_the_same_scores(monkeypatch):
    model, x = seeded(lambda: ResNetish(Bottleneck), 6), images(3, seed=6)
    ref = attribute_reference(model, BLOCK_LAYERS, x)
    seen = []
    real = cla_residual._pairs_per_chunk
    monkeypatch.setattr(cla_residual, "_pairs_per_chunk", lambda *a: seen.append(real(*a)) or seen[-1])
    monkeypatch.setattr(sys.modules["ingest.cla.attribution"], "CPU_TILE_BYTES", 4096)  # tiny CPU tiles
    monkeypatch.setattr(cla_residual, "_MIN_FOLD", 1)  # no minimum batch for small maps
    assert rel_err(attribute(model, BLOCK_LAYERS, x), ref) <= 1e-4
    assert 1 in seen, "a tiny budget runs one (neuron, image) pair per chunk"


def test_stage_cuts_with_several_blocks_take_the_generic_path():
    notes = describe_paths(seeded(TinyResNet), RESNET_LAYERS, images(1))
    assert all(n.startswith("generic") for n in notes), notes


def test_zero_initialised_last_bn_is_the_skip_alone():
    """CLIP's init zeroes each block's last BN scale: the residual branch contributes nothing."""
    torch.manual_seed(7)
    model, x = tiny_clip().eval(), images(2, size=32, seed=7)
    layers = CLIP_LAYERS[:-1]
    assert all(n.startswith("fast: residual block") for n in describe_paths(model, layers, x))
    assert rel_err(attribute(model, layers, x), attribute_reference(model, layers, x)) <= 1e-4


def test_dead_block_outputs_are_skipped_and_score_zero():
    model, x = seeded(lambda: ResNetish(Bottleneck), 8), images(3, seed=8)
    with torch.no_grad():  # channels 0..5 of layer1.1's output: dead on every image
        model.layer1[1].bn3.bias[:6] = -1e4
    fast = attribute(model, BLOCK_LAYERS, x)
    assert np.all(fast[1][:, :6] == 0) and np.all(fast[2][:6] >= 0)
    assert describe_paths(model, BLOCK_LAYERS, x)[1].startswith("fast: residual block")
    assert rel_err(fast, attribute_reference(model, BLOCK_LAYERS, x)) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "clip-rn50"])
def test_full_size_block_cuts_take_the_residual_path_and_match_sampled_reference_columns(name):
    from torchvision.models import resnet50

    from ingest.zoo.clip_rn50 import build_clip_rn50

    torch.manual_seed(0)
    model = (resnet50(weights=None) if name == "resnet50" else build_clip_rn50()).eval()
    layers = [f"layer{s}.{b}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(n)]
    x = images(2, size=96, seed=9)
    assert all(n.startswith("fast: residual block") for n in describe_paths(model, layers, x))
    fast = attribute(model, layers, x)
    cols = [list(range(0, s.shape[1], 97)) for s in fast]
    ref = attribute_reference(model, layers, x, neurons=cols)
    assert rel_err([f[:, c] for f, c in zip(fast, cols)], [r[:, c] for r, c in zip(ref, cols)]) <= 1e-4
