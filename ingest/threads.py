"""CPU threads for torch: how many, and OpenMP's wait policy.

Two things make torch slow on a small or shared CPU:

- **Spin-waiting.** Idle OpenMP threads spin by default, taking cores other threads (and other
  processes) need; on a loaded 2-core machine elementwise ops ran 4-5× slower (measured here:
  2 threads 3.8-6.1 s spinning vs 1.3-1.7 s with `OMP_WAIT_POLICY=PASSIVE`). OpenMP reads the
  variable once, when torch loads it at `import torch`: setting it later does nothing (measured:
  6.6 s, as if unset). The `circuits` command calls `set_wait_policy()` before any torch import
  (child processes inherit it through `os.environ`); importing `ingest` changes nothing, so a
  script's speed does not depend on which it imports first. A script that wants the policy calls
  `set_wait_policy()` before importing torch (or sets the variable in its environment).
- **Oversubscription.** More threads than free cores make every thread wait. `default_threads()`
  is the number of CPUs this process may use (affinity, and a cgroup CPU quota when there is
  one) minus the 1-minute load average, rounded, at least 1; `OMP_NUM_THREADS`, when set, wins.
  It is decided once per process, so a process's own earlier work does not shrink it later.

`configure(n)` applies both. The CLI calls it; library calls (`ingest.pipeline.ingest`, `ablate`)
call it only when given `threads=`, and otherwise leave the process's settings alone.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import warnings
from pathlib import Path

__all__ = ["WAIT_POLICY", "configure", "default_threads", "set_wait_policy", "usable_cpus", "wait_policy_active"]

WAIT_POLICY = "PASSIVE"
# Whether OpenMP saw a wait policy: torch not imported yet when we set it, or set by the user.
_POLICY_BEFORE_TORCH: bool | None = None
_warned = False


def set_wait_policy() -> bool:
    """Set `OMP_WAIT_POLICY=PASSIVE` unless the environment already names one.

    Returns:
        True when OpenMP will see a wait policy (torch was not imported yet, or the variable was
        already set in the environment torch started with).
    """
    global _POLICY_BEFORE_TORCH
    already = "OMP_WAIT_POLICY" in os.environ
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    if _POLICY_BEFORE_TORCH is None:  # the first call decides: later ones see our own setting
        _POLICY_BEFORE_TORCH = already or "torch" not in sys.modules
    return _POLICY_BEFORE_TORCH


def wait_policy_active() -> bool:
    """Whether torch's OpenMP runs with a wait policy from the environment (see `set_wait_policy`)."""
    return bool(_POLICY_BEFORE_TORCH) if _POLICY_BEFORE_TORCH is not None else "OMP_WAIT_POLICY" in os.environ


def _cgroup_cpus() -> float | None:
    """CPUs allowed by a cgroup v2 quota (`cpu.max`), or None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return max(1, min(n, math.floor(quota)) if quota is not None else n)


@functools.cache
def default_threads() -> int:
    """Threads that will not oversubscribe: `OMP_NUM_THREADS` when set, else the usable CPUs minus
    the 1-minute load average (rounded), at least 1. Decided once per process."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    cpus = usable_cpus()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(1, min(cpus, round(cpus - load)))


def configure(threads: int | None = None) -> int:
    """Set the wait policy (effective only before torch is imported) and torch's thread count.

    Args:
        threads: torch intra-op threads; None: `default_threads()`.

    Returns:
        The thread count torch now uses.
    """
    set_wait_policy()
    import torch

    n = default_threads() if threads is None else int(threads)
    if n < 1:
        raise ValueError(f"threads must be at least 1 (got {n})")
    global _warned
    if n > 1 and not wait_policy_active() and not _warned:
        _warned = True
        warnings.warn(
            f"torch was imported before OMP_WAIT_POLICY was set, so its {n} threads spin while idle "
            "(slow on a busy CPU): set OMP_WAIT_POLICY=PASSIVE in the environment, or call "
            "ingest.threads.set_wait_policy() before importing torch",
            RuntimeWarning,
            stacklevel=2,
        )
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
