"""Shared pieces of the CLA tests: random-BN models, seeded image batches, the error measure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import ingest.cla.probe  # noqa: F401 (loaded, so that the fixture below can patch it)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial eval statistics and affine terms (some negative scales) for every BatchNorm."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) * 2 - 0.5)
                m.bias.copy_(torch.rand(c, generator=g) * 0.6 - 0.2)
    return model.eval()


def seeded(build, seed: int = 0) -> nn.Module:
    """`build()` under a fixed torch seed, with random BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    return randomize_bn(build(), seed)


def images(n: int, size: int, seed: int) -> torch.Tensor:
    """A seeded batch of normal-noise images, (n, 3, size, size)."""
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def rel_err(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Max |a - b| relative to max |b|, over all matrices (each taken on its own scale)."""
    errs = []
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape and x.dtype == np.float32
        assert np.all(np.isfinite(x)), "scores must never be NaN or infinite"
        scale = float(np.abs(y).max())
        assert scale > 0
        errs.append(float(np.abs(x - y).max()) / scale)
    return max(errs)


@pytest.fixture(scope="module", autouse=True)
def verified_fast_paths():
    """A verified fast plan is always used (import this fixture into a test module to apply it).

    `attribute` otherwise keeps a fast plan only when it is timed clearly faster than the loop (or
    takes under 20 ms a batch); on a loaded CPU the timings of a small model can pick either.
    Tests of the fast paths' numbers need them taken; the choice itself is tested in
    test_cla_guard.py.
    """
    from ingest.cla.plan_cache import clear_plan_cache

    mp = pytest.MonkeyPatch()
    import ingest.cla.path_choice

    mp.setattr(ingest.cla.path_choice, "NOISE_S", float("inf"))
    clear_plan_cache()
    yield
    mp.undo()
    clear_plan_cache()


class CustomBackward(nn.Module):
    """Identity in the forward (a copy) with the hand-written backward `backward(g)`: a model's
    values stay the same, its gradient becomes whatever `backward` makes of it."""

    def __init__(self, backward):
        super().__init__()

        class _Identity(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.clone()

            @staticmethod
            def backward(ctx, g):
                return backward(g)

        self.fn = _Identity

    def forward(self, x):
        return self.fn.apply(x)
