"""Benchmark of CLA (issue 3): `attribute` against `attribute_reference`, same inputs, one process.

    python bench/bench_cla.py [--case small|googlenet|all] [--ref-neurons 24] [--max-memory-mib 2048]
                              [--device auto] [--gpu-images 64] [--threads 0]

Cases (random init, nothing downloaded):
- small: catfish-mini (the bundled InceptionV1-style network) at 64×64, batch 32, its 4 pairs;
- googlenet: torchvision googlenet (weights=None, init_weights=True, aux_logits=False) at 224×224,
  batch 8, all 8 adjacent pairs of inception3a … inception5b.

The reference on googlenet makes ~5,200 autograd calls per batch. With `--ref-neurons K` (the
default for googlenet) it is timed on K evenly spaced downstream neurons of each pair, and the
full time is extrapolated per pair: (time of the pair's K calls) × C_{i+1} / K, plus the forward
pass measured once. The error is computed on those K columns. `--ref-neurons 0` runs it all.

Peak memory is the growth of the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs) over its size before the call: what the call added, weights excluded.
Targets on a 2-core CPU: googlenet ≥ 5× over the reference, error ≤ 1e-4, peak under max_memory.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from ingest.cla.attribute import attribute, describe_paths
from ingest.cla.reference import attribute_reference
from ingest.hooks import resolve_device

GOOGLENET_LAYERS = [
    "inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
    "inception4e", "inception5a", "inception5b",
]  # fmt: skip


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def measured(fn: Callable[[], object]) -> tuple[object, float, float | None]:
    """(result, seconds, peak memory added in MiB or None where /proc cannot tell)."""
    base = None
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        base = _rss_kib("VmRSS")
    except OSError:
        pass
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = _rss_kib("VmHWM")
    return out, seconds, (peak - base) / 1024 if base is not None and peak is not None else None


def max_rel_err(fast: list[np.ndarray], ref: list[np.ndarray], cols: list[list[int]] | None) -> float:
    errs = []
    for i, (f, r) in enumerate(zip(fast, ref)):
        if cols is not None:
            f, r = f[:, cols[i]], r[:, cols[i]]
        errs.append(float(np.abs(f - r).max() / max(np.abs(r).max(), 1e-30)))
    return max(errs)


def run_case(name, model, layers, x, *, batch, ref_neurons, max_memory, device) -> dict:
    print(f"\n== {name}: images {tuple(x.shape)}, batch {batch}, {len(layers) - 1} pairs, device {device}")
    for layer_pair, note in zip(zip(layers, layers[1:]), describe_paths(model, layers, x, device=device)):
        print(f"   {layer_pair[0]} -> {layer_pair[1]}: {note}")
    fast, t_fast, m_fast = measured(
        lambda: attribute(model, layers, x, batch_size=batch, device=device, max_memory=max_memory)
    )
    widths = [s.shape[0] for s in fast] + [fast[-1].shape[1]]
    cols = None
    if ref_neurons:
        cols = [np.linspace(0, w - 1, min(w, ref_neurons)).round().astype(int).tolist() for w in widths[1:]]
    stamps: list[float] = []  # start, then one stamp per (batch, pair) from the progress calls

    def reference():
        stamps.append(time.perf_counter())
        return attribute_reference(
            model, layers, x, batch_size=batch, device=device, neurons=cols,
            progress=lambda d, t: stamps.append(time.perf_counter()),
        )  # fmt: skip

    ref, t_ref, m_ref = measured(reference)
    extrapolated = None
    if cols is not None:
        n_batches = -(-x.shape[0] // batch)
        _, t_fwd, _ = measured(
            lambda: attribute_reference(model, layers, x, batch_size=batch, device=device, neurons=[[]] * len(cols))
        )  # the forward passes alone: no neuron computed
        per_step = np.diff(stamps).reshape(n_batches, len(cols))
        per_step[:, 0] -= t_fwd / n_batches  # each batch's first pair also ran its forward pass
        scale = np.array([widths[i + 1] / len(cols[i]) for i in range(len(cols))])
        extrapolated = t_fwd + float((per_step * scale).sum())
    err = max_rel_err(fast, ref, cols)
    t_ref_full = extrapolated if extrapolated is not None else t_ref
    return dict(
        name=name, t_fast=t_fast, t_ref=t_ref, t_ref_full=t_ref_full, extrapolated=cols is not None,
        ref_neurons=ref_neurons, widths=widths, err=err, m_fast=m_fast, m_ref=m_ref, max_memory=max_memory,
    )


def _mib(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f} MiB"


def report(rows: list[dict]) -> None:
    head = ("case", "attribute", "reference", "speed-up", "max rel err", "peak attr.", "peak ref.", "max_memory")
    print("\n" + "  ".join(f"{h:>12}" for h in head))
    for r in rows:
        ref = f"{r['t_ref_full']:.1f} s" + ("*" if r["extrapolated"] else "")
        over = r["m_fast"] is not None and r["m_fast"] > r["max_memory"] / 2**20
        cells = (
            r["name"], f"{r['t_fast']:.2f} s", ref, f"{r['t_ref_full'] / r['t_fast']:.1f}x", f"{r['err']:.2e}",
            _mib(r["m_fast"]) + (" OVER" if over else ""), _mib(r["m_ref"]), f"{r['max_memory'] / 2**20:.0f} MiB",
        )  # fmt: skip
        print("  ".join(f"{c:>12}" for c in cells))
    for r in rows:
        if r["extrapolated"]:
            print(
                f"* {r['name']}: reference EXTRAPOLATED, not measured in full: timed on {r['ref_neurons']} evenly "
                f"spaced downstream neurons per pair ({r['t_ref']:.1f} s), each pair's loop time scaled by "
                f"C_next / {r['ref_neurons']}, plus its forward passes measured on their own; the max rel err is over "
                "those neurons' columns only"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=["small", "googlenet", "all"], default="all")
    ap.add_argument("--ref-neurons", type=int, default=24, help="googlenet reference subset per pair (0 = all)")
    ap.add_argument("--max-memory-mib", type=int, default=2048)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--gpu-images", type=int, default=64, help="googlenet images when the device is CUDA")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    max_memory = args.max_memory_mib * 2**20
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    rows = []
    if args.case in ("small", "all"):
        from ingest.zoo.catfish_mini import CATFISH_MINI_LAYERS, build_catfish_mini

        torch.manual_seed(0)
        model = build_catfish_mini().eval()
        x = torch.randn(32, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        rows.append(run_case(
            "small", model, list(CATFISH_MINI_LAYERS), x, batch=32, ref_neurons=0,
            max_memory=max_memory, device=device,
        ))  # fmt: skip
    if args.case in ("googlenet", "all"):
        from torchvision.models import googlenet

        torch.manual_seed(0)
        model = googlenet(weights=None, init_weights=True, aux_logits=False).eval()
        n = args.gpu_images if device.type == "cuda" else 8
        x = torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        rows.append(run_case(
            "googlenet", model, GOOGLENET_LAYERS, x, batch=n if device.type == "cuda" else 8,
            ref_neurons=args.ref_neurons, max_memory=max_memory, device=device,
        ))  # fmt: skip
    report(rows)


if __name__ == "__main__":
    main()
