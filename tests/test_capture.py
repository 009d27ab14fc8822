"""Layer capture: leaves, scoped hooks, unknown names, layer order, widths."""

from __future__ import annotations

import pytest
import torch
from test_cla_models import INCEPTION_LAYERS, InceptionNet, seeded
from torch import nn

from catalog.errors import CircuitsError
from ingest.cla.attribution import attribute
from ingest.cla.capture import (
    CaptureError,
    LayerOrderError,
    UnknownLayer,
    capture,
    capture_layers,
    layer_widths,
    resolve_layers,
)


class Skip(nn.Module):
    """c = conv2(relu(conv1(x))) + skip(x): a path around layer `r1`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.r1 = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()
        self.conv2, self.skip, self.r2 = nn.Conv2d(4, 5, 1), nn.Conv2d(3, 5, 1), nn.ReLU()

    def forward(self, x):
        return self.r2(self.conv2(self.r1(self.conv1(x))) + self.skip(x))


def x(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_layers_become_leaves_and_downstream_is_computed_from_them():
    model = seeded(InceptionNet)
    cap = capture_layers(model, INCEPTION_LAYERS, x())
    assert all(t.is_leaf and t.requires_grad for t in cap.leaves)
    # the graph of layer 2 stops at layer 1's leaf: nothing flows back to layer 0
    assert torch.autograd.grad(cap.outputs[2].sum(), cap.leaves[1], retain_graph=True)[0] is not None
    assert torch.autograd.grad(cap.outputs[2].sum(), cap.leaves[0], allow_unused=True)[0] is None
    assert torch.equal(cap.leaves[3], cap.outputs[3].detach())


def test_skip_paths_around_a_layer_contribute_nothing():
    torch.manual_seed(0)
    model = Skip().eval()
    cap = capture_layers(model, ["r1", "r2"], x())
    a, c = cap.leaves[0], cap.outputs[1]
    (grad,) = torch.autograd.grad(c.sum(), a)
    # by hand: d sum(relu(conv2(a) + skip)) / da = conv2ᵀ (relu mask); the skip term has no say
    mask = (c > 0).float()
    expected = torch.einsum("oc,bohw->bchw", model.conv2.weight[:, :, 0, 0], mask)
    assert torch.allclose(grad, expected, atol=1e-6)


def test_hooks_are_removed_even_when_forward_fails():
    model = seeded(InceptionNet)
    with pytest.raises(RuntimeError), capture(model, INCEPTION_LAYERS):
        model(torch.zeros(1, 5, 8, 8))  # wrong channel count
    assert all(not m._forward_hooks for m in model.modules())
    capture_layers(model, INCEPTION_LAYERS, x())
    assert all(not m._forward_hooks for m in model.modules())


def test_unknown_layer_lists_candidates():
    model = seeded(InceptionNet)
    with pytest.raises(UnknownLayer, match=r"did you mean .*\bb\.branch2\b") as err:
        resolve_layers(model, ["stem", "b.branch_2"])
    assert isinstance(err.value, CircuitsError)
    with pytest.raises(UnknownLayer, match="valid top-level names: stem, a, b, pool, c, fc"):
        capture_layers(model, ["zzz"], x())


def test_layers_out_of_order_or_not_a_chain_are_errors():
    model = seeded(InceptionNet)
    with pytest.raises(LayerOrderError, match="'a' is not computed from layer 'b'"):
        capture_layers(model, ["b", "a"], x())
    # two parallel branches of one block: neither is computed from the other
    with pytest.raises(LayerOrderError, match="'b.branch2' is not computed from layer 'b.branch1'"):
        attribute(model, ["b.branch1", "b.branch2"], x())
    with pytest.raises(CaptureError, match="listed twice"):
        resolve_layers(model, ["a", "a"])


def test_a_shared_module_cannot_be_a_layer():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), relu, nn.Conv2d(4, 4, 3), relu)
    with pytest.raises(CaptureError, match="runs more than once"):
        capture_layers(model, ["1", "2"], x())
    assert all(not m._forward_hooks for m in model.modules())


def test_in_place_op_after_a_layer_is_a_clear_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3), nn.ReLU())
    with pytest.raises(CaptureError, match="in place"):
        attribute(model, ["0", "3"], x())


def test_layer_widths():
    model = seeded(InceptionNet)
    assert layer_widths(model, INCEPTION_LAYERS, (3, 16, 16)) == [16, 22, 28, 32]
    assert layer_widths(model, ["fc"], (3, 16, 16)) == [5]
    assert all(not m._forward_hooks for m in model.modules())
