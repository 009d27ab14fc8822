"""ingest.hooks: the one hook primitive, device resolution, the channel axis, scoped placement."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from catalog.errors import CircuitsError
from ingest.hooks import DeviceError, channel_dim, evaluating_on, resolve_device, scoped_hooks


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))


def hooked(model):
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_scoped_hooks_edit_outputs_and_inputs_and_always_go_away():
    m, x = net(), torch.randn(5, 3)
    clean = m(x)
    calls = []
    with scoped_hooks(
        m,
        {"1": lambda _m, _i, out: torch.zeros_like(out)},
        pre={"": lambda _m, args, kwargs: calls.append(tuple(kwargs))},
        pre_with_kwargs=True,
    ):
        zeroed = m(x)
    assert calls == [()] and not hooked(m)
    assert torch.allclose(zeroed, m[2](torch.zeros(5, 4)).expand_as(zeroed))  # ReLU output zeroed
    assert not torch.equal(zeroed, clean) and torch.equal(m(x), clean)

    def boom(*_):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), scoped_hooks(m, {"2.0": boom}):
        m(x)
    assert not hooked(m)
    with pytest.raises(AttributeError):
        with scoped_hooks(m, {"0": boom, "nope": boom}):
            pass
    assert not hooked(m)  # the hook attached before the bad path is removed too


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    assert issubclass(DeviceError, CircuitsError)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")


def test_channel_dim():
    assert channel_dim(torch.zeros(2, 3)) == 1
    assert channel_dim(torch.zeros(2, 3, 4, 4)) == 1
    assert channel_dim(torch.zeros(2, 7, 3)) == 2  # (B, N, D) tokens: a neuron is a feature
    with pytest.raises(ValueError, match="layer 'x' outputs shape"):
        channel_dim(torch.zeros(2), "x")

    class Mine(CircuitsError):
        pass

    with pytest.raises(Mine):
        channel_dim(torch.zeros(1, 2, 3, 4, 5), error=Mine)


def test_evaluating_on_restores_placement_and_modes_even_on_error():
    m = net().train()
    m.add_module("bn", nn.BatchNorm1d(2))
    m[2].eval()
    params = [(p, p.detach().clone()) for p in m.parameters()]
    buffers = [b for b in m.buffers()]
    with pytest.raises(RuntimeError, match="inside"):
        with evaluating_on(m, torch.device("meta")) as same:
            assert same is m and not any(x.training for x in m.modules())
            assert all(p.device.type == "meta" for p in m.parameters())
            raise RuntimeError("inside")
    assert m.training and m[0].training and not m[2].training and not m[2][0].training and m.bn.training
    for (p, value), q in zip(params, m.parameters()):
        assert q is p and q.device.type == "cpu" and torch.equal(q, value)
    assert all(a is b for a, b in zip(buffers, m.buffers()))
