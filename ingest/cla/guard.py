"""Gradient guard: a fast plan is used only after its scores match autograd's on sampled neurons.

A plan is read from module calls and verified on forward values, but the fast path differentiates
the *modules* by hand, while the model's real backward may differ from what its forward implies: a
custom `autograd.Function` (a straight-through estimator, a gradient-scaling ReLU), a tensor or
module backward hook. Such a block reproduces the forward exactly and would still get wrong
scores. So `check_plan` computes a few downstream columns both ways on the probe image — the fast
plan, and the plain loop of docs/method.md, "Cross-Layer Attribution" (`reference_pair_scores`, autograd through the model's own
graph) — and accepts the plan only when they agree. Whether an accepted plan is also faster than
the loop is timed on the run's batch by `ingest.cla.path_choice`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ingest.cla.capture import channels_first
from ingest.cla.generic import generic_pair_scores, reference_pair_scores

__all__ = [
    "GUARD_COLUMNS",
    "GUARD_TOLERANCE",
    "GuardResult",
    "check_plan",
    "sample_columns",
    "time_generic",
]

GUARD_COLUMNS = 6  # a handful of autograd calls on one image: cheap next to any batch
# float32 fast paths agree with autograd to ~1e-6 here; a wrong backward is off by O(1)
GUARD_TOLERANCE = 1e-3


@dataclass(frozen=True)
class GuardResult:
    """Outcome of one gradient check.

    Attributes:
        ok: the fast scores match autograd on every sampled column.
        error: max |fast - autograd| over the sampled columns, relative to max |autograd|.
        columns: the downstream channels checked (empty: none active on the probe image).
        fast_seconds: the fast plan's time for those columns.
        loop_seconds: the per-neuron autograd loop's time for those columns.
    """

    ok: bool
    error: float
    columns: list[int]
    fast_seconds: float
    loop_seconds: float


def sample_columns(out: torch.Tensor, k: int = GUARD_COLUMNS) -> list[int]:
    """Up to k downstream channels, ascending, evenly spread over those active on the probe image.

    Args:
        out: layer i+1's output for the probe image, e.g. (1, C, H, W).
        k: how many.
    """
    norms = torch.linalg.vector_norm(channels_first(out.detach()), dim=-1).sum(0)  # (C,)
    active = torch.nonzero(norms > 0).flatten().tolist()
    if not active:
        return []
    picks = np.linspace(0, len(active) - 1, min(k, len(active))).round().astype(int)
    return sorted({active[p] for p in picks})


def check_plan(
    fast_columns: Callable[[list[int]], torch.Tensor],
    out: torch.Tensor,
    leaf: torch.Tensor,
    *,
    k: int = GUARD_COLUMNS,
    tolerance: float = GUARD_TOLERANCE,
    repeats: int = 2,
) -> GuardResult:
    """Compare a fast plan with autograd on sampled downstream columns of the probe image.

    Args:
        fast_columns: computes the fast scores of the given ascending columns, (C_i, K).
        out: layer i+1's output, attached to the graph that starts at `leaf`.
        leaf: layer i's leaf (requires grad).
        k: columns to sample.
        tolerance: largest accepted relative error.
        repeats: runs of each method; the timings are the fastest run.

    Returns:
        The outcome; a plan with no active column on the probe image cannot be checked and is
        reported as not ok.
    """
    cols = sample_columns(out, k)
    if not cols:
        return GuardResult(False, float("nan"), [], 0.0, 0.0)
    t_fast = t_loop = float("inf")
    for _ in range(repeats):  # the best of a few: one image on a shared CPU times noisily
        t0 = time.perf_counter()
        with torch.no_grad():
            fast = fast_columns(cols).double()  # (C_i, K)
        _sync(leaf)
        t1 = time.perf_counter()
        with torch.enable_grad():
            ref = reference_pair_scores(out, leaf, cols)[:, cols].double()  # (C_i, K)
        _sync(leaf)
        t2 = time.perf_counter()
        t_fast, t_loop = min(t_fast, t1 - t0), min(t_loop, t2 - t1)
    scale = float(ref.abs().max())
    diff = float((fast - ref).abs().max())
    error = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    return GuardResult(bool(error <= tolerance), error, cols, t_fast, t_loop)


def time_generic(
    out: torch.Tensor, leaf: torch.Tensor, budget_bytes: int, *, graph_bytes: int = 0, repeats: int = 2
) -> tuple[float, float]:
    """Seconds of the two generic autograd forms on sampled columns of the probe image.

    Args:
        out: layer i+1's output, attached to the graph that starts at `leaf`.
        leaf: layer i's leaf (requires grad).
        budget_bytes: chunk memory for the batched form.
        graph_bytes: the probe's saved activations (see `generic_pair_scores`).
        repeats: runs of each; the fastest counts.

    Returns:
        (one call per neuron, batched VJPs), each the best of `repeats` runs; (0, 0) when no
        downstream neuron is active on the probe image; batched is infinite where vmap fails.
    """
    cols = sample_columns(out)
    if not cols:
        return 0.0, 0.0
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for k, batched in enumerate((False, True)):
            t0 = time.perf_counter()
            try:
                with torch.enable_grad():
                    generic_pair_scores(
                        out, leaf, batched=batched, budget_bytes=budget_bytes, neurons=cols, graph_bytes=graph_bytes
                    )
            except RuntimeError:  # vmap cannot batch some ops (e.g. a custom autograd.Function)
                if not batched:
                    raise
                return best[0], float("inf")
            _sync(leaf)
            best[k] = min(best[k], time.perf_counter() - t0)
    return best[0], best[1]


def _sync(t: torch.Tensor) -> None:
    """Wait for queued GPU work, so wall-clock timings are the work's own."""
    if t.device.type == "cuda":
        torch.cuda.synchronize(t.device)
