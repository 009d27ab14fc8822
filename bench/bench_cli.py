"""Start-up cost of the `circuits` command: each command as a fresh process, as a user runs it.

Times, in the same run so machine load affects all alike (median of `--repeat` runs each):

* `python -c "import duckdb"` — the floor for any command that reads a DuckDB file;
* `circuits --help` (target < 0.5 s);
* `circuits sql "select 1"` on a DuckDB catalog (target < 0.6 s);
* `circuits list circuits`, `circuits export` and `circuits refine` on a small catalog (the toy
  catalog of the query tests: read commands and a search from stored edges, no model).

Columns: median and minimum wall time, and median CPU time (user + system) of the command's
process, which a loaded machine inflates far less than wall time.

Usage: `python bench/bench_cli.py [--repeat 5]`. Runs with the interpreter that runs it; the
package must be importable (installed, or PYTHONPATH set to the repository).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "from circuits.cli.main import main; main()"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(cmd: list[str], repeat: int, env: dict[str, str]) -> tuple[float, float, float]:
    """(median wall, min wall, median CPU) seconds of `repeat` runs of `cmd`; fails loudly on failure.

    CPU time (user + system of the child) is the figure that survives a loaded machine.
    """
    walls, cpus = [], []
    for _ in range(repeat):
        c0, t0 = _cpu(), time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
        if r.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return statistics.median(walls), min(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="Runs per command (the median is reported).")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.duckdb"
        subprocess.run([*CLI, "db", "init", "--db", str(empty)], env=env, check=True, capture_output=True)
        toy = Path(tmp) / "toy.duckdb"
        sys.path.insert(0, str(ROOT / "tests"))
        from test_queries_toy import build_toy

        from catalog.engine import close_all

        built = build_toy(str(toy))
        close_all()
        run_id = built.run["star"]
        cases = [
            ("python -c 'import duckdb'", [sys.executable, "-c", "import duckdb"], None),
            ("circuits --help", [*CLI, "--help"], 0.5),
            ("circuits sql 'select 1'", [*CLI, "sql", "select 1", "--db", str(empty)], 0.6),
            ("circuits list circuits", [*CLI, "list", "circuits", "--db", str(toy)], None),
            (
                "circuits export star",
                [*CLI, "export", "star", "--model", "toy", "-o", str(Path(tmp) / "m.json"), "--db", str(toy)],
                None,
            ),
            (f"circuits refine {run_id} --k 2", [*CLI, "refine", str(run_id), "--k", "2", "--db", str(toy)], None),
        ]
        print(
            f"{'command':<34} {'median':>8} {'min':>8} {'cpu':>8}  {'target'}   "
            f"({args.repeat} runs each; load {os.getloadavg()[0]:.1f}; {sys.executable})"
        )
        for label, cmd, target in cases:
            median, best, cpu = _time(cmd, args.repeat, env)
            mark = "" if target is None else f"< {target:.1f} s" + ("" if median < target else "  MISSED")
            print(f"{label:<34} {median:>7.3f}s {best:>7.3f}s {cpu:>7.3f}s  {mark}")


if __name__ == "__main__":
    main()
