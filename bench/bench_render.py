"""Time of `circuits --format table` on an N × N overlap-like matrix, in process.

    python bench/bench_render.py [--n 100 200 500] [--rich-up-to 200]

Rows as `circuits overlap` prints them (a concept column, then one float column per concept).
Prints, per N, the seconds of `render_table` (the fixed-width layout above
`circuits.cli.tables.RICH_MAX_CELLS` cells), of `rich_table` on the same cells (only up to
`--rich-up-to`: it grows faster than the cells, ~50–90 s at 500), and of `render_csv`.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from circuits.cli.render import _is_number, format_value, render_csv, render_table
from circuits.cli.tables import rich_table


def seconds(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[100, 200, 500])
    ap.add_argument("--rich-up-to", type=int, default=200)
    args = ap.parse_args()
    print(f"{'N':>5} {'cells':>9} {'table s':>8} {'rich s':>8} {'csv s':>8} {'table MB':>9}")
    for n in args.n:
        rng = random.Random(n)
        names = [f"concept-{i:05d}" for i in range(n)]
        rows = [{"concept": a, **{b: rng.random() for b in names}} for a in names]
        t_table, text = seconds(render_table, rows)
        t_rich = float("nan")
        if n <= args.rich_up_to:
            cols = list(rows[0])
            cells = [[format_value(r[c]) for c in cols] for r in rows]
            right = [all(_is_number(r[c]) for r in rows) for c in cols]
            t_rich, _ = seconds(rich_table, cols, cells, right)
        t_csv, _ = seconds(render_csv, rows)
        print(f"{n:>5} {n * (n + 1):>9,} {t_table:>8.2f} {t_rich:>8.2f} {t_csv:>8.2f} {len(str(text)) / 1e6:>9.2f}")


if __name__ == "__main__":
    main()
