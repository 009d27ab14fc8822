"""Benchmark of CLA: `attribute` against `attribute_reference`, same inputs, one process.

    python bench/bench_cla.py [--case small|googlenet|resnet50|clip-rn50|resnet50-stages|all]
                              [--ref-neurons 24] [--images N] [--max-memory-mib 2048] [--device auto]
                              [--gpu-images 64] [--threads 1,auto] [--size PX] [--pairs N]

Cases (random init, nothing downloaded), one row each; `CASES` below holds them, one line per model:
- small: catfish-mini (the bundled InceptionV1-style network) at 64×64, 32 images, its 4 pairs;
  the reference runs in full;
- googlenet: torchvision googlenet at 224×224, 8 images, the 8 pairs of inception3a … inception5b;
- resnet50: torchvision resnet50 at 224×224, 8 images, cut at every bottleneck block's output
  (layer1.0 … layer4.2, 15 pairs: residual fast path);
- clip-rn50: CLIP's RN50 image tower at 224×224, 8 images, cut at every block output likewise;
- resnet50-stages: resnet50 at 112×112, 4 images, cut at the stage outputs layer1 … layer4 (3
  pairs, several blocks between cuts: the generic path, which must not be slower than the loop);
- efficientnet-lite0: EfficientNet-Lite0 at 224×224, 8 images, the zoo's layers (all 16 MBConv
  block outputs, 15 pairs: residual path for inverted residuals, conv-chain path for the rest);
- typo-vit, vit_b_16: the transformer cases of `bench/vit_cla.py` (the bundled typo-vit, all 11
  block pairs, 4 images; torchvision vit_b_16 at 224 px, `encoder_layer_5.mlp.1 →
  encoder_layer_6.mlp.1`, 2 images), printed as that script prints them: per pair the loop, the
  engine and the FLOP bound of exact CLA, in full (no reference subset).
Each case runs once per `--threads` count (default 1 and the machine's default), rows side by side.

Every case but `small` times the reference on `--ref-neurons K` evenly spaced downstream neurons
of each pair and extrapolates the full time per pair: (time of the pair's K calls) × C_{i+1} / K,
plus the forward passes measured once; it does so before and after `attribute` and reports the
mean (load on a shared machine drifts during the long call). The error is computed on those K
columns. `--ref-neurons 0` runs it all (hours on a CPU for resnet50).

Peak memory is the growth of the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs) over its size before the call: what the call added, weights excluded.
Targets on a 2-core CPU: every speed-up ≥ 1, googlenet and resnet50 ≥ 5×, error ≤ 1e-4, peak
under max_memory.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from googlenet_shape import NAMES as GOOGLENET_LAYERS  # bench/ is on sys.path when a bench runs
from vit_cla import VIT_CASES
from vit_cla import run as run_vit

import ingest  # noqa: F401  (sets OMP_WAIT_POLICY=PASSIVE before torch starts its thread pools)
from ingest.cla.attribution import attribute, describe_paths
from ingest.cla.capture import layer_widths
from ingest.cla.plan_cache import clear_plan_cache
from ingest.cla.reference import attribute_reference
from ingest.hooks import resolve_device

# every bottleneck's output: stage outputs (layer1 … layer4) would put 3–6 blocks between two cuts,
# a dense Jacobian that only autograd handles; block cuts take the residual fast path
RESNET50_BLOCKS = [f"layer{s}.{b}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(n)]


def _catfish_mini():
    from ingest.zoo.catfish_mini import build_catfish_mini

    return build_catfish_mini()


def _googlenet():
    from torchvision.models import googlenet

    return googlenet(weights=None, init_weights=True, aux_logits=False)


def _resnet50():
    from torchvision.models import resnet50

    return resnet50(weights=None)


def _clip_rn50():
    from ingest.zoo.clip_rn50 import build_clip_rn50

    return build_clip_rn50()


def _efficientnet_lite0():
    from ingest.zoo.efficientnet_lite import build_efficientnet_lite0

    return build_efficientnet_lite0()


def _efficientnet_layers() -> list[str]:
    from ingest.zoo.efficientnet_lite import DEFAULT_LAYERS

    return list(DEFAULT_LAYERS)


def _catfish_layers() -> list[str]:
    from ingest.zoo.catfish_mini import CATFISH_MINI_LAYERS

    return list(CATFISH_MINI_LAYERS)


@dataclass(frozen=True)
class Case:
    """One benchmark row: a random-init model, its layers, the input side and image count (CPU)."""

    build: Callable[[], torch.nn.Module]
    layers: Callable[[], list[str]]
    size: int
    images: int = 8
    full_reference: bool = False  # time the reference on every neuron (small models only)


CASES: dict[str, Case] = {
    "small": Case(_catfish_mini, _catfish_layers, 64, images=32, full_reference=True),
    "googlenet": Case(_googlenet, lambda: GOOGLENET_LAYERS, 224),
    "resnet50": Case(_resnet50, lambda: RESNET50_BLOCKS, 224),
    "clip-rn50": Case(_clip_rn50, lambda: RESNET50_BLOCKS, 224),
    # the zoo's layers: one per resolution/width step, several MBConv blocks between cuts
    "efficientnet-lite0": Case(_efficientnet_lite0, _efficientnet_layers, 224),
    # stage cuts: no fast plan, the generic path must still not be slower than the loop
    "resnet50-stages": Case(_resnet50, lambda: ["layer1", "layer2", "layer3", "layer4"], 112, images=4),
}


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    """Return freed heap memory to the OS (glibc), so that RSS growth counts what a call touches."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measured(fn: Callable[[], object]) -> tuple[object, float, float | None]:
    """(result, seconds, peak memory added in MiB or None where /proc cannot tell)."""
    _trim_heap()  # memory freed by an earlier call would otherwise be reused unseen
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
    clear_plan_cache()
    # the first call plans (probe and gradient check on one image, path timings on the first
    # batch); the plan is then cached for this model, layers, input shape and batch size, so the
    # timed `attribute` below is a second call
    t0 = time.perf_counter()
    notes = describe_paths(model, layers, x, device=device, batch_size=batch, max_memory=max_memory)
    t_plan = time.perf_counter() - t0
    for layer_pair, note in zip(zip(layers, layers[1:]), notes):
        print(f"   {layer_pair[0]} -> {layer_pair[1]}: {note}")
    print(f"   planning (first call only): {t_plan:.2f} s", flush=True)
    with torch.no_grad():
        widths = layer_widths(model, layers, tuple(x.shape[1:]))
    cols = None
    if ref_neurons:
        cols = [np.linspace(0, w - 1, min(w, ref_neurons)).round().astype(int).tolist() for w in widths[1:]]
    # a sampled reference is short next to `attribute`: time it before and after, and average,
    # so that a change of load on a shared machine during the long call biases neither side
    before = _reference(model, layers, x, batch, device, cols) if cols is not None else None
    stamps, call = _stamped(attribute, model, layers, x, batch_size=batch, device=device, max_memory=max_memory)
    fast, t_fast, m_fast = measured(call)
    ref, t_ref, m_ref, t_full, ref_pairs, t_fwd = _reference(model, layers, x, batch, device, cols)
    full_times = [t_full] if before is None else [before[3], t_full]
    t_ref_full = float(np.mean(full_times))
    ref_pairs = ref_pairs if before is None else (ref_pairs + before[4]) / 2
    err = max_rel_err(fast, ref, cols)
    star = "*" if cols else ""
    speed = f"{t_ref_full / t_fast:.2f}x"
    print(f"   attribute {t_fast:.1f} s, reference {t_ref_full:.1f} s{star}: {speed}, err {err:.1e}", flush=True)
    fast_pairs = _attribute_pairs(stamps, notes, n_batches=-(-x.shape[0] // batch), t_fwd=t_fwd)
    if fast_pairs is not None:
        _print_pairs(layers, notes, fast_pairs, ref_pairs, star)
    return dict(
        name=name,
        t_plan=t_plan,
        t_fast=t_fast,
        t_ref=t_ref,
        t_ref_full=t_ref_full,
        extrapolated=cols is not None,
        ref_neurons=ref_neurons,
        widths=widths,
        err=err,
        m_fast=m_fast,
        m_ref=m_ref,
        max_memory=max_memory,
        ref_runs=full_times,
    )


def _stamped(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[list[float], Callable[[], Any]]:
    """A call of `fn(*args, **kwargs)` that notes the time when it starts and at each progress
    report (one per batch and pair): (the list the stamps go to, the call)."""
    stamps: list[float] = []

    def call() -> Any:
        stamps.append(time.perf_counter())
        return fn(*args, **kwargs, progress=lambda done, total: stamps.append(time.perf_counter()))

    return stamps, call


def _attribute_pairs(stamps: list[float], notes: list[str], *, n_batches: int, t_fwd: float) -> np.ndarray | None:
    """Seconds per pair of the timed `attribute` call, from its progress stamps.

    `attribute` reports after each pair of each batch, fast pairs first (in order), then the
    generic ones; each batch's first report also covers its forward pass, which is taken off
    (`t_fwd`, measured on the reference's forward). None when the stamps do not fit that order (a
    pair left its plan mid-run).
    """
    n = len(notes)
    if len(stamps) != 1 + n_batches * n:
        return None
    order = [i for i, note in enumerate(notes) if note.startswith("fast")]
    order += [i for i in range(n) if i not in order]
    steps = np.diff(stamps).reshape(n_batches, n)
    steps[:, 0] = np.maximum(steps[:, 0] - t_fwd / n_batches, 0.0)
    out = np.zeros(n)
    out[order] = steps.sum(axis=0)
    return out


def _print_pairs(layers, notes, fast_pairs: np.ndarray, ref_pairs: np.ndarray, star: str) -> None:
    """One row per pair: path, `attribute`'s time, the loop's, and their ratio (SLOWER below 0.9)."""
    print(f"   {'pair':<34} {'path':<8} {'attribute':>10} {'reference':>10} {'speed-up':>9}")
    for i, (a, b) in enumerate(zip(layers, layers[1:])):
        ratio = ref_pairs[i] / fast_pairs[i] if fast_pairs[i] > 0 else float("inf")
        flag = "  SLOWER" if ratio < 0.9 else ""
        path = notes[i].split(":")[0]
        print(
            f"   {a + ' -> ' + b:<34} {path:<8} {fast_pairs[i]:>9.2f}s {ref_pairs[i]:>9.2f}s{star or ' '}"
            f"{ratio:>8.2f}x{flag}"
        )


def _reference(model, layers, x, batch, device, cols) -> tuple:
    """(scores, seconds, peak MiB, full-run seconds: measured, or extrapolated from `cols`,
    seconds per pair likewise (forward passes excluded), the forward passes' seconds)."""
    stamps, call = _stamped(attribute_reference, model, layers, x, batch_size=batch, device=device, neurons=cols)
    ref, t_ref, m_ref = measured(call)
    n_pairs = len(layers) - 1
    n_batches = -(-x.shape[0] // batch)
    _, t_fwd, _ = measured(
        lambda: attribute_reference(model, layers, x, batch_size=batch, device=device, neurons=[[]] * n_pairs)
    )  # the forward passes alone: no neuron computed
    per_step = np.diff(stamps).reshape(n_batches, n_pairs)
    per_step[:, 0] -= t_fwd / n_batches  # each batch's first pair also ran its forward pass
    per_step = np.maximum(per_step, 0.0)  # tiny smoke runs: timing noise can exceed a pair's work
    if cols is None:
        return ref, t_ref, m_ref, t_ref, per_step.sum(axis=0), t_fwd
    widths = [s.shape[0] for s in ref] + [ref[-1].shape[1]]
    scale = np.array([widths[i + 1] / len(cols[i]) for i in range(len(cols))])
    per_pair = (per_step * scale).sum(axis=0)
    return ref, t_ref, m_ref, t_fwd + float(per_pair.sum()), per_pair, t_fwd


def _mib(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f} MiB"


def report(rows: list[dict]) -> None:
    head = (
        "case",
        "planning",
        "attribute",
        "reference",
        "speed-up",
        "max rel err",
        "peak attr.",
        "peak ref.",
        "max_memory",
    )
    print("\n" + "  ".join(f"{h:>12}" for h in head))
    for r in rows:
        ref = f"{r['t_ref_full']:.1f} s" + ("*" if r["extrapolated"] else "")
        over = r["m_fast"] is not None and r["m_fast"] > r["max_memory"] / 2**20
        cells = (
            r["name"],
            f"{r['t_plan']:.2f} s",
            f"{r['t_fast']:.2f} s",
            ref,
            f"{r['t_ref_full'] / r['t_fast']:.1f}x",
            f"{r['err']:.2e}",
            _mib(r["m_fast"]) + (" OVER" if over else ""),
            _mib(r["m_ref"]),
            f"{r['max_memory'] / 2**20:.0f} MiB",
        )
        print("  ".join(f"{c:>12}" for c in cells))
    for r in rows:
        if r["extrapolated"]:
            print(
                f"* {r['name']}: reference EXTRAPOLATED, not measured in full: timed on {r['ref_neurons']} evenly "
                f"spaced downstream neurons per pair ({r['t_ref']:.1f} s), each pair's loop time scaled by "
                f"C_next / {r['ref_neurons']}, plus its forward passes measured on their own; the mean of runs before "
                f"and after `attribute` ({', '.join(f'{t:.1f} s' for t in r['ref_runs'])}); the max rel err is over "
                "those neurons' columns only"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=[*CASES, *VIT_CASES, "all"], default="all", nargs="+")
    ap.add_argument("--ref-neurons", type=int, default=24, help="reference subset per pair (0 = all neurons)")
    ap.add_argument("--images", type=int, default=0, help="images per case on a CPU (0: the case's own)")
    ap.add_argument("--max-memory-mib", type=int, default=2048)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--gpu-images", type=int, default=64, help="images per 224-px case when the device is CUDA")
    ap.add_argument("--size", type=int, default=0, help="input side in pixels (0: the case's own; smoke runs)")
    ap.add_argument("--pairs", type=int, default=0, help="only the first N layer pairs (0: all; smoke runs)")
    ap.add_argument(
        "--threads",
        default="1,auto",
        help="comma-separated torch CPU thread counts, each a row per case (auto: ingest.threads' default)",
    )
    args = ap.parse_args()
    from ingest.threads import configure, default_threads

    counts = list(dict.fromkeys(default_threads() if t == "auto" else int(t) for t in args.threads.split(",")))
    device = resolve_device(args.device)
    max_memory = args.max_memory_mib * 2**20
    print(f"torch {torch.__version__}, thread counts {counts}, device {device}")
    names = [*CASES, *VIT_CASES] if "all" in args.case else args.case
    rows = []
    for name, threads in ((n, t) for n in names for t in counts):
        configure(threads)
        if name in VIT_CASES:  # its own table, printed now
            print(f"\n{name}, {threads} thread(s):")
            run_vit(name, threads=threads, generic=False)
            continue
        case = CASES[name]
        torch.manual_seed(0)
        model = case.build().eval()
        n = args.images or case.images
        if device.type == "cuda" and case.size >= 224:
            n = args.gpu_images
        side = args.size or case.size
        x = torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(1))
        rows.append(
            run_case(
                f"{name} {threads}t",
                model,
                case.layers()[: args.pairs + 1] if args.pairs else case.layers(),
                x,
                batch=n,
                ref_neurons=0 if case.full_reference else args.ref_neurons,
                max_memory=max_memory,
                device=device,
            )
        )
        del model
    if rows:
        report(rows)


if __name__ == "__main__":
    main()
