"""How fast exact CLA on resnet50's block cuts can be on this machine: a FLOP bound.

    python bench/resnet_bound.py [--images 4] [--size 224] [--threads 1]

The residual fast path (`ingest.cla.residual`) shares a bottleneck's last 1×1 conv and its skip
among all downstream neurons, but the 3×3 conv sits between two ReLUs, so every live (neuron,
image) pair still needs a dense backward through conv2 and conv1. This script counts that work
from the layer shapes and the pairs that are live on the bench's images (the same seeded
model and normal-noise batch as `bench/bench_cla.py`), measures the core's FP32 throughput on the fastest
kernels we have (oneDNN convolutions, which reach the FMA peak; MKL's sgemm is printed too), and
prints the least time the path can take. Divide the reference time `bench_cla.py --case resnet50`
prints by it for the largest speed-up any implementation of this method can show here.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from timing import best_seconds

import ingest  # noqa: F401  (thread wait policy before torch starts its pools)

BLOCKS = [f"layer{s}.{b}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(n)]


def _best(fn, repeats: int = 8) -> float:
    return best_seconds(fn, repeats, warmup=2)


def peak_gflops() -> dict[str, float]:
    """FP32 GFLOP/s of a few large kernels, best of several runs."""
    out = {}
    x = torch.randn(16, 1024, 14, 14).contiguous(memory_format=torch.channels_last)
    w = torch.randn(1024, 1024, 1, 1).contiguous(memory_format=torch.channels_last)
    out["oneDNN 1x1 conv, channels-last"] = 2 * 1024 * 1024 * 196 * 16 / _best(lambda: F.conv2d(x, w)) / 1e9
    x3, w3 = torch.randn(16, 256, 14, 14), torch.randn(256, 256, 3, 3)
    out["oneDNN 3x3 conv input-gradient"] = (
        2 * 9 * 256 * 256 * 196 * 16 / _best(lambda: torch.nn.grad.conv2d_input(x3.shape, w3, x3, 1, 1)) / 1e9
    )
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    out["MKL sgemm 2048"] = 2 * 2048**3 / _best(lambda: a @ b, 4) / 1e9
    return out


def live_pair_flop(images: int, size: int) -> tuple[float, float]:
    """(FLOP of the dense per-pair backward over live pairs, the same over all pairs)."""
    from torchvision.models import resnet50

    torch.manual_seed(0)
    model = resnet50(weights=None).eval()
    convs, outs, hooks = {}, {}, []
    for name in BLOCKS:
        block = model.get_submodule(name)
        hooks.append(block.register_forward_hook(lambda m, i, o, name=name: outs.__setitem__(name, o)))
        for c in ("conv1", "conv2"):
            conv = getattr(block, c)
            hooks.append(
                conv.register_forward_hook(lambda m, i, o, key=(name, c): convs.__setitem__(key, (i[0], o, m)))
            )
    with torch.no_grad():
        model(torch.randn(images, 3, size, size, generator=torch.Generator().manual_seed(1)))
    live = every = 0.0
    for name in BLOCKS[1:]:  # the downstream block of each pair
        macs = 0
        for c in ("conv1", "conv2"):
            x, y, m = convs[(name, c)]
            macs += y.shape[1] * y.shape[2] * y.shape[3] * x.shape[1] // m.groups * m.kernel_size[0] * m.kernel_size[1]
        alive = int((outs[name].flatten(2).abs().sum(-1) > 0).sum())
        live += 2.0 * macs * alive
        every += 2.0 * macs * outs[name].shape[0] * outs[name].shape[1]
    for h in hooks:
        h.remove()
    return live, every


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from ingest.threads import configure

    configure(args.threads)
    live, every = live_pair_flop(args.images, args.size)
    rates = peak_gflops()
    for name, rate in rates.items():
        print(f"{name:34s} {rate:6.0f} GFLOP/s ({args.threads} thread)")
    peak = max(rates.values())
    print(
        f"dense per-pair backward, resnet50 block cuts, {args.images} images at {args.size} px: "
        f"{live / 1e12:.2f} TFLOP over live pairs ({every / 1e12:.2f} over all)"
    )
    print(
        f"least time at {peak:.0f} GFLOP/s: {live / peak / 1e9:.1f} s "
        f"(speed-up bound = reference seconds / {live / peak / 1e9:.1f})"
    )


if __name__ == "__main__":
    main()
