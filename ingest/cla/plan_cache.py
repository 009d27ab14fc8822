"""Per-process cache of CLA plans: a second `attribute` call on the same model does not plan again.

Planning (`ingest.cla.probe.probe`) runs a probe image, reads the fast plans from the module
calls, checks each against autograd's gradients on sampled neurons (`ingest.cla.guard`) and times
the paths; on resnet50 block cuts that is seconds, more than a small batch's attribution. Its
result depends only on the model (its modules, hooks and weights), the layers, the input shape,
the device and whether fast paths are allowed, so it is kept per model object (weakly: the cache
never keeps a model alive) under that key.

The weights' identity is a fingerprint taken at each call: per parameter and buffer its name,
shape, dtype, and float64 sum and L2 norm. Any weight update (a training step,
`load_state_dict`, an edit through `.data`) changes it, and the plan is made again. The
fingerprint costs one read of the weights (about 20 ms for resnet50's 25 M parameters on one CPU
core), small next to planning.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import torch
from torch import nn

__all__ = ["cached_plan", "clear_plan_cache", "model_fingerprint", "plan_cache_info", "shared_plan"]

T = TypeVar("T")

_LOCK = threading.Lock()
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[Hashable, object]] = weakref.WeakKeyDictionary()
_STATS = {"hits": 0, "misses": 0}
_MAX_PER_MODEL = 16  # layer lists × input shapes kept per model (oldest dropped first)
_SHARED: dict[Hashable, object] = {}  # results that refer to no model, by key alone (`shared_plan`)
_MAX_SHARED = 64


def model_fingerprint(model: nn.Module) -> tuple:
    """The identity of a model's code-visible structure and weights, cheap enough for every call.

    Returns:
        A hashable tuple: module names and types, hook counts (a hook can change the backward
        the gradient check verified), and per parameter/buffer its name, shape, dtype and float64
        sum and L2 norm.
    """
    modules = tuple(
        (
            name,
            type(m).__qualname__,
            len(m._forward_hooks),
            len(m._forward_pre_hooks),
            len(m._backward_hooks),
            len(getattr(m, "_backward_pre_hooks", ())),
        )
        for name, m in model.named_modules()
    )
    tensors = [(n, t) for n, t in model.named_parameters()] + [
        (n, t) for n, t in model.named_buffers() if t is not None
    ]
    with torch.no_grad():
        stats: list[tuple] = []
        if tensors:
            home = tensors[0][1].device
            sums = torch.stack(  # float64 accumulation without a float64 copy of each tensor
                [_stats(t).to(home) for _, t in tensors]
            ).tolist()  # (n_tensors, 2): one transfer from the device
            stats = [(n, tuple(t.shape), str(t.dtype), *s) for (n, t), s in zip(tensors, sums)]
    return modules, tuple(stats)


def _stats(t: torch.Tensor) -> torch.Tensor:
    """[sum, L2 norm] of a tensor's values, accumulated in float64 (complex: real and imaginary parts)."""
    x = t if t.is_floating_point() else torch.view_as_real(t) if t.is_complex() else t.double()
    return torch.stack([x.sum(dtype=torch.float64), torch.linalg.vector_norm(x, dtype=torch.float64)])


def cached_plan(
    model: nn.Module, key: Sequence[Hashable], make: Callable[[], T], *, fingerprint: tuple | None = None
) -> T:
    """`make()`'s result, reused while the model, its weights and `key` stay the same.

    Args:
        model: the network (the cache holds it weakly).
        key: what else the result depends on (layers, input shape, device, options).
        make: computes the result (the probe).
        fingerprint: the model's `model_fingerprint`, when the caller already has it.

    Returns:
        The cached or new result.
    """
    full_key = (tuple(key), fingerprint if fingerprint is not None else model_fingerprint(model))
    with _LOCK:
        entries = _CACHE.get(model)
        if entries is not None and full_key in entries:
            _STATS["hits"] += 1
            return entries[full_key]  # type: ignore[return-value]
        _STATS["misses"] += 1
    value = make()
    with _LOCK:
        entries = _CACHE.setdefault(model, {})
        entries[full_key] = value
        while len(entries) > _MAX_PER_MODEL:
            del entries[next(iter(entries))]
    return value


def shared_plan(key: Sequence[Hashable], make: Callable[[], T]) -> T:
    """`make()`'s result, kept by `key` alone, not by a model object: for results that refer to no
    module and depend only on what `key` names (which includes a `model_fingerprint`), so that
    another object of the same model and weights reuses them. At most 64 are kept (oldest first).
    """
    full_key = tuple(key)
    with _LOCK:
        if full_key in _SHARED:
            _STATS["hits"] += 1
            return _SHARED[full_key]  # type: ignore[return-value]
        _STATS["misses"] += 1
    value = make()
    with _LOCK:
        _SHARED[full_key] = value
        while len(_SHARED) > _MAX_SHARED:
            del _SHARED[next(iter(_SHARED))]
    return value


def clear_plan_cache() -> None:
    """Forget every cached plan (benchmarks timing the first call use it)."""
    with _LOCK:
        _CACHE.clear()
        _SHARED.clear()
        _STATS.update(hits=0, misses=0)


def plan_cache_info() -> dict[str, int]:
    """{"hits", "misses", "models"}: how often a plan was reused or made since the last clear."""
    with _LOCK:
        return {**_STATS, "models": len(_CACHE)}
