"""Progress of long commands written as plain lines, for logs: a live bar needs a terminal.

`progress_lines()` turns the pipeline's (stage, done, total) callbacks into one line on stderr at
most every `every` seconds (the first update prints at once), each with the time since the
command started and an estimate of the time left in the current stage:

    [   3m12s] pruning 41/126 (33%), ETA 6m30s

`command_progress(table)` picks the form: the rich bar (`circuits.cli.render.progress_bar`)
when stderr is a terminal, these lines when it is not (a log file, a pipe, `nohup`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TextIO

__all__ = ["command_progress", "format_seconds", "progress_lines"]

Update = Callable[[str, int, int], None]


def format_seconds(seconds: float) -> str:
    """`42s`, `3m12s`, `1h05m`."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_lines(
    stream: TextIO | None = None, *, every: float = 10.0, clock: Callable[[], float] = time.monotonic
) -> Update:
    """A progress callback that writes a line at most every `every` seconds.

    Args:
        stream: where to write (default: stderr at call time).
        every: least seconds between two lines.
        clock: the time source (tests pass a fake one).

    Returns:
        `update(stage, done, total)`; the ETA is the stage's mean time per step so far times the
        steps left (`?` before its first step is done).
    """
    t0 = clock()
    last: list[float | None] = [None]
    # stage -> (when its current count began, the count then, its total, the count last seen)
    stages: dict[str, tuple[float, int, int, int]] = {}

    def update(stage: str, done: int, total: int) -> None:
        now = clock()
        seen = stages.get(stage)
        if seen is None or seen[2] != total or done < seen[3]:
            seen = (now, done, total, done)  # a new stage, or the same one counting again
        stages[stage] = seen = (seen[0], seen[1], total, done)
        if last[0] is not None and now - last[0] < every:
            return
        last[0] = now
        pct = f" ({100 * done / total:.0f}%)" if total > 0 else ""
        if done >= total > 0:
            eta = ", done"
        elif done > seen[1]:
            eta = f", ETA {format_seconds((now - seen[0]) / (done - seen[1]) * (total - done))}"
        else:
            eta = ", ETA ?"
        out = stream if stream is not None else sys.stderr
        print(f"[{format_seconds(now - t0):>7}] {stage} {done}/{total}{pct}{eta}", file=out, flush=True)

    return update


@contextmanager
def command_progress(table: bool = True) -> Iterator[Update | None]:
    """Progress for a long command: the live bar on a terminal, `progress_lines` otherwise.

    Args:
        table: whether the command prints a table on stdout (the bar draws on stdout, so only
            then; lines go to stderr and never mix with CSV or JSON).
    """
    if sys.stderr.isatty():
        from circuits.cli.render import progress_bar

        with progress_bar() if table else nullcontext(None) as update:
            yield update
    else:
        yield progress_lines()
