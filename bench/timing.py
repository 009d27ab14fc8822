"""Timed calls for the benches: the best of a few after warm-up calls (how a kernel is timed), or
the median of a few (how a whole command or query is timed)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def best_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """The least wall time of `repeats` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def median_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    """The median wall time of `repeats` calls of `fn` (no warm-up: the first call counts)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
