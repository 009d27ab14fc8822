"""Rendering speed of the procedural data sets (CatFish-synth, Typographic-synth).

Times, in one process after a warm-up, the renders the demo, training and `circuits defend` make:

* 500 CatFish-synth class images (`render_concept`; target ≥ 500 images/s);
* a Typographic-synth training split of 600 images (`make_typo_split(50)`, text on half, text
  alone on a tenth) plus 240 attack images (`render_typo("typo:attack", 240)`; target < 8 s).

Usage: `python bench/bench_datasets.py [--repeat 3]` (median of `--repeat` runs). Prints a
Markdown table; exits 1 when a target is missed, so a CI job can run it.
"""

from __future__ import annotations

import argparse
import sys

from timing import median_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from ingest.datasets.catfish import render_concept
    from ingest.datasets.typo import make_typo_split, render_typo

    render_concept("stripes_star", 20, seed=0)  # warm up (font and drawing caches)
    render_typo("typo:attack", 10, seed=0)

    catfish_s = median_seconds(lambda: render_concept("dots_hatch", 500, seed=0), args.repeat)
    typo_s = median_seconds(
        lambda: (
            make_typo_split(50, seed=0, text_share=0.5, text_only_share=0.1),
            render_typo("typo:attack", 240, seed=0),
        ),
        args.repeat,
    )
    rate = 500 / catfish_s
    rows = [
        ("CatFish-synth, 500 class images", f"{catfish_s:.2f} s, {rate:.0f} images/s", "≥ 500 images/s", rate >= 500),
        ("Typographic-synth, 600-image split + 240 attack images", f"{typo_s:.2f} s", "< 8 s", typo_s < 8.0),
    ]
    print("| render | median | target | met |")
    print("|---|---|---|---|")
    for name, value, target, met in rows:
        print(f"| {name} | {value} | {target} | {'yes' if met else 'NO'} |")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
