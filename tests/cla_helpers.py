"""Shared pieces of the CLA tests: random-BN models, seeded image batches, the error measure."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


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
