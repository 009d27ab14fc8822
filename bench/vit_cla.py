"""CLA on a ViT: the engine (`attribute`) against the per-neuron loop (`attribute_reference`).

    python bench/vit_cla.py [--model typo-vit] [--images 4] [--threads 1]

Every adjacent pair of the model's default layers (typo-vit: per block, heads then MLP
activation; 11 pairs), on Typographic-synth attack images. Prints both times, their ratio and
the largest relative difference of the score matrices. There is no transformer fast path yet
(issue 19, item 4): the engine takes the generic autograd path for every pair.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ingest import zoo
from ingest.cla import attribute, attribute_reference, describe_paths
from ingest.datasets.typo_sets import typo_image_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="typo-vit")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loaded = zoo.load_model(args.model)
    x = zoo.preprocess(loaded.spec, list(typo_image_set("typo:attack", args.images, seed=7).images))
    layers = list(loaded.layers)
    print(
        "\n".join(f"{a} -> {b}: {p}" for a, b, p in zip(layers, layers[1:], describe_paths(loaded.module, layers, x)))
    )
    t0 = time.perf_counter()
    got = attribute(loaded.module, layers, x, device="cpu")
    t_engine = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = attribute_reference(loaded.module, layers, x, device="cpu")
    t_loop = time.perf_counter() - t0
    err = max(float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-30)) for g, r in zip(got, ref))
    print(
        f"{args.model}, {len(layers) - 1} pairs, {args.images} images, {args.threads} thread(s): "
        f"engine {t_engine:.1f} s, loop {t_loop:.1f} s ({t_loop / t_engine:.2f}x the loop's speed), "
        f"max rel. difference {err:.1e}"
    )


if __name__ == "__main__":
    main()
