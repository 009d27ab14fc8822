"""Fast plan or per-neuron loop, per layer pair, timed on a batch of the run's size.

The probe (`ingest.cla.probe`) finds and verifies the fast plans on one image. Which of a
verified plan and the plain loop is faster depends on the batch: the loop's per-call overhead is
shared by every image of a batch, the fast path's work grows with it. On EfficientNet-Lite0 four
pairs whose fast path was 1.3-1.9x faster than the loop on one probe image ran at 0.63-0.81x the
loop on a batch of four (docs/results.md, "Defend like ingest, per-pair paths, plan cache, GPU
check"). So `choose_paths` times both on the first images of the run, as many as one batch of the
run holds (fewer only when a forward pass with autograd's graph would not fit the memory budget),
and keeps a fast plan only when it is clearly faster: the loop is the reference itself, so a pair
that runs it is never slower than it.

The loop is timed on six sampled neurons and scaled to all of them, the fast path on six and
more to separate its per-batch part from its per-neuron part (`ingest.cla.guard.pair_seconds`).
Where one timing of each leaves no doubt (the fast path under 20 ms, or at most half the loop's
time even with its whole time charged per neuron) that settles it; otherwise each timing is the
fastest of two runs (a shared CPU times noisily, and noise only ever adds time).
The result is cached with the plan, keyed by the batch size (`ingest.cla.attribution`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn

from ingest.cla.capture import capture, channels_first
from ingest.cla.generic import generic_pair_scores
from ingest.cla.guard import GuardResult, pair_seconds, sample_columns
from ingest.cla.plan import matches
from ingest.cla.probe import FastPlan, Probe, fast_scores, run_fast

__all__ = ["FAST_SHARE", "NOISE_S", "choose_paths", "time_pair"]

_log = logging.getLogger(__name__)
# A fast plan is kept when its estimated time on the batch is at most this share of the loop's:
# within 10 % the two are a tie under timing noise, and the tie goes to the loop, which cannot be
# slower than itself.
FAST_SHARE = 0.9
# ...or when it takes under this long for the whole batch: the pair costs less than timing noise
# either way (the tests' tiny models), and the fast plan stays.
NOISE_S = 0.02
_REPEATS = 2
# one timing suffices when the fast path's upper bound is at most this share of the loop's time
_CLEAR_SHARE = 0.5

T = TypeVar("T")


def choose_paths(
    model: nn.Module,
    layers: Sequence[str],
    batch: torch.Tensor,
    info: Probe,
    *,
    budget_bytes: int,
    tile_bytes: int | None,
) -> Probe:
    """The probe's findings with each verified fast plan kept or replaced by the loop, as timed on `batch`.

    Args:
        model: the network, inside `ingest.cla.probe.prepared`.
        layers: dotted module paths, in forward order.
        batch: images as the run feeds them, (B, C, H, W), on the model's device.
        info: the probe's findings (plans verified on one image).
        budget_bytes: the run's memory for per-chunk buffers (the fast path's chunks).
        tile_bytes: the run's tile size for the fast path (None on GPUs).

    Returns:
        A copy of `info` whose plans, notes and generic-path sizes reflect the choice.
    """
    with capture(model, layers) as cap, torch.enable_grad():
        model(batch)
        leaves, outs = cap.leaf_list(), cap.output_list()
    n = batch.shape[0]
    plans, notes = list(info.plans), list(info.notes)
    generic_bytes = info.generic_bytes
    for i, plan in enumerate(info.plans):
        if plan is None:
            continue
        t_fast, t_loop = time_pair(plan, outs[i + 1], leaves[i], budget_bytes=budget_bytes, tile_bytes=tile_bytes)
        timing = f"batch of {n}: fast {t_fast * 1e3:.1f} ms vs loop {t_loop * 1e3:.1f} ms"
        if t_fast <= FAST_SHARE * t_loop or t_fast <= NOISE_S:
            notes[i] = f"{notes[i]}; {timing}"
            continue
        pair = f"{layers[i]} -> {layers[i + 1]}"
        _log.info("CLA %s: the per-neuron loop is faster than the fast plan (%s)", pair, timing)
        plans[i] = None
        notes[i] = f"generic: the per-neuron loop beat the fast plan ({timing}); one autograd call per neuron"
        per_image = 4 * (leaves[i].numel() + leaves[i + 1].numel()) * 4 // n  # as the probe sizes generic pairs
        generic_bytes = max(generic_bytes, per_image)
    vjp = [b and p is None for b, p in zip(info.vjp_batched, plans)]  # a replaced plan runs the plain loop
    return dataclasses.replace(info, plans=plans, notes=notes, vjp_batched=vjp, generic_bytes=generic_bytes)


def time_pair(
    plan: FastPlan, out: torch.Tensor, leaf: torch.Tensor, *, budget_bytes: int, tile_bytes: int | None
) -> tuple[float, float]:
    """(fast, loop) seconds for every downstream neuron of one pair on this batch.

    Args:
        plan: the pair's verified fast plan.
        out: layer i+1's output on the batch, attached to the graph that starts at `leaf`.
        leaf: layer i's leaf on the batch (requires grad).
        budget_bytes, tile_bytes: the run's chunk memory and tile size.

    Returns:
        The fast path's time (its forward, which the run pays per batch, plus its scores) and
        the loop's, each estimated from the fastest of two timings; the fast time is 0 when no
        downstream neuron is active on the batch (the fast path then has nothing to do).
    """
    a = leaf.detach()
    with torch.no_grad():
        t_run, run = _best(lambda: run_fast(plan, a), out, 1)
    if not matches(run, out.detach()):
        return 0.0, 0.0  # data-dependent forward: `attribute` falls back to autograd per batch anyway
    cols = sample_columns(out)
    if not cols:
        return 0.0, 0.0
    n_all, n_live = channels_first(out).shape[1], len(sample_columns(out, channels_first(out).shape[1]))

    def fast_columns(c: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return fast_scores(plan, run, a, budget_bytes, tile_bytes, c)

    def loop() -> torch.Tensor:
        with torch.enable_grad():
            return generic_pair_scores(out, leaf, batched=False, budget_bytes=budget_bytes, neurons=cols)

    t_cols, _ = _best(lambda: fast_columns(cols), out, 1)
    t_loop_cols, _ = _best(loop, out, 1)
    # one timing each settles it when the fast path wins by far even with its whole time charged
    # per neuron (an upper bound), or costs less than timing noise: no second runs (the tests'
    # small models, and most wide layers); near the line, the fastest of two runs decides
    upper = t_run + t_cols / len(cols) * n_live
    if upper <= NOISE_S or upper <= _CLEAR_SHARE * t_loop_cols / len(cols) * n_all:
        return upper, t_loop_cols / len(cols) * n_all
    with torch.no_grad():
        t_run = min(t_run, _best(lambda: run_fast(plan, a), out, 1)[0])
    t_cols = min(t_cols, _best(lambda: fast_columns(cols), out, 1)[0])
    t_loop_cols = min(t_loop_cols, _best(loop, out, 1)[0])
    guard = GuardResult(True, 0.0, cols, t_cols, t_loop_cols)
    t_fast, t_loop = pair_seconds(fast_columns, guard, out, repeats=_REPEATS)
    return t_run + t_fast, t_loop


def _best(fn: Callable[[], T], like: torch.Tensor, repeats: int = _REPEATS) -> tuple[float, T]:
    """(fastest of `repeats` runs in seconds, the last result)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        if like.device.type == "cuda":
            torch.cuda.synchronize(like.device)
        best = min(best, time.perf_counter() - t0)
    return best, result
