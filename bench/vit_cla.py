"""CLA on a ViT: the engine (`attribute`) against the per-neuron loop, beside the FLOP bound of exact CLA.

    python bench/vit_cla.py [--case typo-vit|vit_b_16] [--images N] [--size PX] [--threads 1]

- typo-vit: the bundled model's default layers (per block, heads then MLP activation; 11 pairs),
  on Typographic-synth attack images (default 4);
- vit_b_16: torchvision vit_b_16 (random init), `encoder_layer_5.mlp.1 → encoder_layer_6.mlp.1`
  (3,072 → 3,072 units), on seeded noise images (default 2) at `--size` px (default 224; a
  smaller size keeps the widths and cuts the tokens).

Timings of the whole call, one process: the per-neuron loop (`attribute_reference`), the engine
(`attribute`) on its first call (plan cache cleared, so its probe is included) and with its plan
cached (what every later batch and call pays; best of three when a call is short), and the
engine with the block and token-MLP paths switched off (the generic path every pair took before,
`--no-generic` skips it). Per pair, from the progress stamps of one batch (the cached-plan
engine's; the first pair's time includes the forward pass): loop and engine seconds, their
ratio, and the FLOP bound of exact CLA: per live downstream unit, one dense VJP through the block's ops between
the layers (for a pair into an MLP activation, from fc1's input back to the leaf: fc1's row is
shared; for a pair into heads, from the heads back), counted with torch's FLOP counter on the
bench batch, times the live units, at the best FP32 GEMM rate measured here (before the timed
runs and again after them; the higher counts). "bound %" is the least time over the engine's
time. The bound is the dense VJP's: a closed form that skips one of its GEMMs (heads → MLP: the
output projection's backward) can run under it, over 100 %. Figures on a shared machine drift:
compare within a run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from timing import best_seconds
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_backward_flop_count

import ingest  # noqa: F401  (thread wait policy before torch starts its pools)
from ingest.cla import attribute, attribute_reference, clear_plan_cache
from ingest.cla.block_span import block_span, record_norm_inputs
from ingest.cla.capture import capture, channels_first
from ingest.cla.token_mlp import record_mlp_calls, token_mlp
from ingest.cla.vit_block import block_reproduced, span_scores

VIT_CASES = ("typo-vit", "vit_b_16")
VIT_B_16_PAIR = ["encoder.layers.encoder_layer_5.mlp.1", "encoder.layers.encoder_layer_6.mlp.1"]
_CPU_SDPA_BWD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


@register_flop_formula(_CPU_SDPA_BWD)
def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """torch's counter knows the CUDA attention backwards only; the CPU one does the same matmuls."""
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _best(fn, repeats: int = 5) -> float:
    return best_seconds(fn, repeats, warmup=1)


def peak_gflops(tokens: int, width: int) -> float:
    """Best FP32 GFLOP/s of MKL sgemm: square 2048, and the token-shaped (16·T × D) @ (D × 4D)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    sq = 2 * 2048**3 / _best(lambda: a @ b, 3) / 1e9
    x, w = torch.randn(16 * tokens, width), torch.randn(width, 4 * width)
    tok = 2 * x.shape[0] * width * 4 * width / _best(lambda: x @ w) / 1e9
    return max(sq, tok)


def pair_bound_flop(model, layers, x) -> list[tuple[float, int, str]]:
    """Per pair: (FLOP of one live unit's dense VJP on the batch, live units, path the engine takes)."""
    out: list[tuple[float, int, str]] = []
    with (
        capture(model, layers) as cap,
        record_mlp_calls(model, layers) as calls,
        record_norm_inputs(model) as ln_in,
        torch.enable_grad(),
    ):
        model(x)
        leaves, outs = cap.leaf_list(), cap.output_list()
        for i in range(len(layers) - 1):
            span = block_span(model, layers[i], layers[i + 1])
            y = channels_first(outs[i + 1].detach())
            norms = torch.linalg.vector_norm(y, dim=-1)  # (B, C)
            live = int((norms.sum(0) > 0).sum())
            n = int(norms.sum(0).argmax())
            mlp = token_mlp(model, layers[i + 1], outs[i + 1], calls)
            if mlp is not None:
                target, cot, path = mlp.u, mlp.slope[..., n : n + 1] * mlp.weight[n], "token MLP"
                cot = cot * channels_first(outs[i + 1].detach())[:, n].unsqueeze(-1)  # ∝ the unit's cotangent
            else:
                target, path = outs[i + 1], "generic"
                cot = torch.zeros_like(outs[i + 1])
                channels_first(cot)[:, n] = y[:, n]
            with FlopCounterMode(display=False) as fc:
                torch.autograd.grad(target, leaves[i], cot, retain_graph=True)
            if span is not None and block_reproduced(span, outs[i + 1], leaves[i], mlp, ln_in):
                path = f"block:{span.kind}"
            out.append((float(fc.get_total_flops()), live, path))
    return out


def _stamped(fn) -> tuple[list[np.ndarray], list[float]]:
    stamps = [time.perf_counter()]
    result = fn(lambda done, total: stamps.append(time.perf_counter()))
    return result, np.diff(stamps).tolist()


def sampled(model, layers, x, k: int, bounds, peak: float, args) -> None:
    """Per pair: the loop's and the engine path's seconds on K evenly spaced downstream units,
    extrapolated to all units (× C / K), each on its own forward graph (the reference's: the model
    as it is; the engine's: with `ingest.cla.token_mlp`'s hooks); the forwards are not counted."""
    from ingest.cla.attribution import DEFAULT_MAX_MEMORY
    from ingest.cla.generic import generic_pair_scores, reference_pair_scores
    from ingest.cla.token_mlp import token_mlp_scores

    print(
        f"{args.case}, {x.shape[0]} images, {args.threads} thread(s), {k} sampled units per pair, best GEMM {peak:.0f} GFLOP/s"
    )
    with capture(model, layers) as cap, torch.enable_grad():
        model(x)  # the reference's forward: the model as it is
        ref_leaves, ref_outs = cap.leaf_list(), cap.output_list()
    with (
        capture(model, layers) as cap,
        record_mlp_calls(model, layers) as calls,
        record_norm_inputs(model) as ln_in,
        torch.enable_grad(),
    ):
        model(x)  # the engine's forward
        leaves, outs = cap.leaf_list(), cap.output_list()
        for i, (flop, live, path) in enumerate(bounds):
            width = channels_first(outs[i + 1]).shape[1]
            cols = list(range(0, width, max(1, width // k)))[:k]
            mlp = token_mlp(model, layers[i + 1], outs[i + 1], calls)
            span = block_span(model, layers[i], layers[i + 1])
            t0 = time.perf_counter()
            ref = reference_pair_scores(ref_outs[i + 1], ref_leaves[i], cols)[:, cols]
            t_ref = (time.perf_counter() - t0) * width / len(cols)
            t0 = time.perf_counter()
            got = None
            if span is not None:
                got = span_scores(
                    span,
                    outs[i + 1],
                    leaves[i],
                    mlp,
                    ln_in,
                    budget_bytes=DEFAULT_MAX_MEMORY // 2,
                    check_grad=False,
                    neurons=cols,
                )
            if got is not None:
                pass
            elif mlp is not None:
                got = token_mlp_scores(
                    outs[i + 1], leaves[i], mlp, batched=True, budget_bytes=DEFAULT_MAX_MEMORY // 2, neurons=cols
                )
            else:
                got = generic_pair_scores(outs[i + 1], leaves[i], batched=False, budget_bytes=0, neurons=cols)
            t_fast = (time.perf_counter() - t0) * width / len(cols)
            err = float((got[:, cols] - ref).abs().max() / ref.abs().max())
            least = flop * live / peak / 1e9
            print(
                f"{layers[i]} -> {layers[i + 1]} ({path}, {live} live units): loop {t_ref:.1f} s, "
                f"path {t_fast:.1f} s ({t_ref / t_fast:.2f}x the loop), bound {least:.1f} s "
                f"({100 * least / t_fast:.0f}% of the path's time), max rel. difference {err:.1e}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="typo-vit", choices=list(VIT_CASES))
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--size", type=int, default=224, help="vit_b_16's image size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-generic", action="store_true", help="skip the run with the block and token-MLP paths off")
    ap.add_argument("--units", type=int, default=0, help="time K evenly spaced units per pair and extrapolate")
    args = ap.parse_args()
    run(
        args.case,
        images=args.images,
        size=args.size,
        threads=args.threads,
        generic=not args.no_generic,
        units=args.units,
    )


def run(
    case: str, *, images: int | None = None, size: int = 224, threads: int = 1, generic: bool = True, units: int = 0
) -> None:
    """Time one case and print its per-pair table (`bench/bench_cla.py --case typo-vit` runs it too)."""
    args = argparse.Namespace(case=case, images=images, size=size, threads=threads, no_generic=not generic)
    torch.set_num_threads(args.threads)
    if args.case == "typo-vit":
        from ingest import zoo
        from ingest.datasets.typo_sets import typo_image_set

        loaded = zoo.load_model("typo-vit")
        model, layers = loaded.module, list(loaded.layers)
        n = args.images or 4
        x = zoo.preprocess(loaded.spec, list(typo_image_set("typo:attack", n, seed=7).images))
    else:
        from torchvision.models import vit_b_16

        torch.manual_seed(0)
        model, layers = vit_b_16(weights=None, image_size=args.size).eval(), VIT_B_16_PAIR
        n = args.images or 2
        x = torch.randn(n, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    batch = x.shape[0]  # one batch: the progress stamps are the pairs' times
    for p in model.parameters():
        p.requires_grad_(False)
    bounds = pair_bound_flop(model, layers, x)
    with capture(model, layers[:1]) as cap, torch.no_grad():
        model(x[:1])
        t0 = cap.leaf_list()[0]
    tokens = t0.shape[1] if t0.ndim == 3 else t0.shape[2]
    width = 768 if args.case == "vit_b_16" else 96
    peak = peak_gflops(int(tokens), width)

    if units:
        sampled(model, layers, x, units, bounds, peak, args)
        return
    ref, t_ref = _stamped(lambda cb: attribute_reference(model, layers, x, batch_size=batch, progress=cb))
    clear_plan_cache()
    got, t_cold = _stamped(lambda cb: attribute(model, layers, x, device="cpu", batch_size=batch, progress=cb))
    repeats = 3 if sum(t_cold) < 10 else 1  # a long call is its own average
    t_fast = min(  # the plan cached, as every later batch and call pays: best of three short calls
        (
            _stamped(lambda cb: attribute(model, layers, x, device="cpu", batch_size=batch, progress=cb))[1]
            for _ in range(repeats)
        ),
        key=sum,
    )
    t_gen: list[float] = []
    if not args.no_generic:
        clear_plan_cache()  # fast=False: no block or token-MLP path, the generic path every pair took before
        _, t_gen = _stamped(
            lambda cb: attribute(model, layers, x, device="cpu", batch_size=batch, progress=cb, fast=False)
        )
    # the rate again after the timed runs: on a shared machine the load drifts over minutes, and a
    # rate measured only before them would put the bound on a busier (or quieter) machine than the engine
    before = peak
    peak = max(peak, peak_gflops(int(tokens), width))
    err = max(float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-30)) for g, r in zip(got, ref))
    print(
        f"{args.case}, {len(layers) - 1} pair(s), {n} images, {args.threads} thread(s), best GEMM {peak:.0f} GFLOP/s "
        f"(before the runs {before:.0f}, the best of before and after counts)"
    )
    print(
        f"{'pair':58s} {'path':14s} {'units':>5s} {'loop s':>8s} {'fast s':>8s} {'x loop':>7s} {'bound s':>8s} {'bound %':>7s}"
    )
    tot_bound = 0.0
    for i, (flop, live, path) in enumerate(bounds):
        least = flop * live / peak / 1e9
        tot_bound += least
        name = f"{layers[i].split('.')[-2]}.{layers[i].split('.')[-1]} -> {'.'.join(layers[i + 1].split('.')[-2:])}"
        print(
            f"{name[:58]:58s} {path:14s} {live:5d} {t_ref[i]:8.4f} {t_fast[i]:8.4f} {t_ref[i] / t_fast[i]:7.2f} "
            f"{least:8.4f} {100 * least / t_fast[i]:6.0f}%"
        )
    total_ref, total_fast, total_cold = sum(t_ref), sum(t_fast), sum(t_cold)
    gen = f", engine with the block and token-MLP paths off {sum(t_gen):.1f} s" if t_gen else ""
    print(
        f"total: loop {total_ref:.3f} s, engine {total_fast:.3f} s ({total_ref / total_fast:.2f}x the loop's speed; "
        f"the first pair includes the forward){gen}; bound {tot_bound:.3f} s ({100 * tot_bound / total_fast:.0f}% of "
        f"the engine's time); max rel. difference {err:.1e}"
    )
    print(
        f"first call (plan cache cleared: the probe included): engine {total_cold:.3f} s "
        f"({total_ref / total_cold:.2f}x the loop's speed, bound {100 * tot_bound / total_cold:.0f}% of it)"
    )


if __name__ == "__main__":
    main()
