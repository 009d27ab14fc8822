"""Fast plan or per-neuron loop, per layer pair, timed on a batch of the run's size.

The probe (`ingest.cla.probe`) finds and verifies the fast plans on one image. Which of a
verified plan and the plain loop is faster depends on the batch: the loop's per-call overhead is
shared by every image of a batch, the fast path's work grows with it. On EfficientNet-Lite0 four
pairs whose fast path was 1.3-1.9x faster than the loop on one probe image ran at 0.63-0.81x the
loop on a batch of four
(docs/results.md, "Defend like ingest, per-pair paths, plan cache, GPU check").
So `choose_paths` times both on the first images of the run, as many as one batch of the
run holds (fewer only when a forward pass with autograd's graph would not fit the memory budget),
and keeps a fast plan only when it is clearly faster: the loop is the reference itself, so a pair
that runs it is never slower than it.

The fast path is run on that batch as the run runs it (its forward, then every neuron): its time
is measured, not extrapolated (a line through timings on 6 and 24 columns read EfficientNet's
late pairs 1.2-1.9x too fast), and its scores are exact, so the run uses them as its first batch
instead of computing it again. The loop is timed on six sampled neurons, the faster of two runs,
and scaled to all of them (it costs the same per neuron). So choosing costs the loop's six
neurons and one forward pass per pair set. The choice is cached with the plan, keyed by the
batch size (`ingest.cla.attribution`), and as a `PathChoice` (no module in it) by the model's
fingerprint: another object of the same model and weights (a zoo model loaded again, as each
ingest of `circuits demo` does) reuses it after its own probe.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ingest.cla.capture import capture, channels_first
from ingest.cla.generic import generic_pair_scores
from ingest.cla.guard import sample_columns
from ingest.cla.plan import matches
from ingest.cla.probe import FastPlan, Probe, fast_scores, run_fast

__all__ = ["FAST_SHARE", "NOISE_S", "PathChoice", "apply_choice", "choose_paths", "time_pair"]

_log = logging.getLogger(__name__)
# A fast plan is kept when its time on the batch is at most this share of the loop's:
# within 10 % the two are a tie under timing noise, and the tie goes to the loop, which cannot be
# slower than itself.
FAST_SHARE = 0.9
# ...or when it takes under this long for the whole batch: the pair costs less than timing noise
# either way (the tests' tiny models), and the fast plan stays.
NOISE_S = 0.02


@dataclass(frozen=True)
class PathChoice:
    """What `choose_paths` decided: the pairs whose verified plan the loop replaced, every pair's
    note, and the generic path's scratch per image. It refers to no module, so any object of the
    same model can take it (`apply_choice`)."""

    replaced: frozenset[int]
    notes: tuple[str, ...]
    generic_bytes: int


def choose_paths(
    model: nn.Module,
    layers: Sequence[str],
    batch: torch.Tensor,
    info: Probe,
    *,
    budget_bytes: int,
    tile_bytes: int | None,
    first_sums: dict[int, torch.Tensor] | None = None,
) -> PathChoice:
    """Which verified fast plans the loop replaces, as timed on `batch` (`apply_choice` applies it).

    Args:
        model: the network, inside `ingest.cla.probe.prepared`.
        layers: dotted module paths, in forward order.
        batch: images as the run feeds them, (B, C, H, W), on the model's device.
        info: the probe's findings (plans verified on one image).
        budget_bytes: the run's memory for per-chunk buffers (the fast path's chunks).
        tile_bytes: the run's tile size for the fast path (None on GPUs).
        first_sums: when given, filled with each timed pair's scores summed over `batch`
            (C_i, C_{i+1}): exact whichever path is chosen, so a run whose first batch is
            `batch` uses them instead of computing that batch again.
    """
    with capture(model, layers) as cap, torch.enable_grad():
        model(batch)
        leaves, outs = cap.leaf_list(), cap.output_list()
    n = batch.shape[0]
    replaced: set[int] = set()
    notes = list(info.notes)
    generic_bytes = info.generic_bytes
    for i, plan in enumerate(info.plans):
        if plan is None:
            continue
        t_fast, t_loop, scores = time_pair(
            plan, outs[i + 1], leaves[i], budget_bytes=budget_bytes, tile_bytes=tile_bytes
        )
        if first_sums is not None and scores is not None:
            first_sums[i] = scores
        timing = f"batch of {n}: fast {t_fast * 1e3:.1f} ms vs loop {t_loop * 1e3:.1f} ms"
        if t_fast <= FAST_SHARE * t_loop or t_fast <= NOISE_S:
            notes[i] = f"{notes[i]}; {timing}"
            continue
        pair = f"{layers[i]} -> {layers[i + 1]}"
        _log.info("CLA %s: the per-neuron loop is faster than the fast plan (%s)", pair, timing)
        replaced.add(i)
        notes[i] = f"generic: the per-neuron loop beat the fast plan ({timing}); one autograd call per neuron"
        per_image = 4 * (leaves[i].numel() + leaves[i + 1].numel()) * 4 // n  # as the probe sizes generic pairs
        generic_bytes = max(generic_bytes, per_image)
    return PathChoice(frozenset(replaced), tuple(notes), generic_bytes)


def apply_choice(probed: Probe, choice: PathChoice) -> Probe:
    """A copy of the probe's findings whose plans, notes and generic-path sizes reflect the choice
    (made on this object of the model or on another of the same model and weights)."""
    plans = [None if i in choice.replaced else p for i, p in enumerate(probed.plans)]
    vjp = [b and p is None for b, p in zip(probed.vjp_batched, plans)]  # a replaced plan runs the plain loop
    return dataclasses.replace(
        probed, plans=plans, notes=list(choice.notes), vjp_batched=vjp, generic_bytes=choice.generic_bytes
    )


def time_pair(
    plan: FastPlan, out: torch.Tensor, leaf: torch.Tensor, *, budget_bytes: int, tile_bytes: int | None
) -> tuple[float, float, torch.Tensor | None]:
    """(fast seconds, loop seconds, the fast path's scores) for every downstream neuron of one pair on this batch.

    The fast path runs as the run would run it (its forward, then every neuron), so its time is
    measured, not estimated, and its scores are the batch's result. The loop is timed on six
    sampled neurons, the faster of two runs, and scaled to all of them (it costs the same per
    neuron).

    Args:
        plan: the pair's verified fast plan.
        out: layer i+1's output on the batch, attached to the graph that starts at `leaf`.
        leaf: layer i's leaf on the batch (requires grad).
        budget_bytes, tile_bytes: the run's chunk memory and tile size.

    Returns:
        The two times and the batch's summed scores (C_i, C_{i+1}); (0, 0, None) when the plan
        does not reproduce the batch's A_{i+1} (a data-dependent forward, which `attribute`
        sends to autograd) or no downstream neuron is active (the fast path has nothing to do).
    """
    a = leaf.detach()
    t0 = time.perf_counter()
    with torch.no_grad():
        run = run_fast(plan, a)
        if not matches(run, out.detach()):
            return 0.0, 0.0, None
        scores = fast_scores(plan, run, a, budget_bytes, tile_bytes)
    _sync(out)
    t_fast = time.perf_counter() - t0
    del run
    cols = sample_columns(out)
    if not cols:
        return 0.0, 0.0, scores
    t_cols = float("inf")
    for _ in range(2):  # the faster of two: a shared CPU times noisily, and noise only adds
        t0 = time.perf_counter()
        with torch.enable_grad():
            generic_pair_scores(out, leaf, batched=False, budget_bytes=budget_bytes, neurons=cols)
        _sync(out)
        t_cols = min(t_cols, time.perf_counter() - t0)
    return t_fast, t_cols / len(cols) * int(channels_first(out).shape[1]), scores


def _sync(like: torch.Tensor) -> None:
    if like.device.type == "cuda":
        torch.cuda.synchronize(like.device)
