"""Cross-Layer Attribution (docs/method.md, "Cross-Layer Attribution"): the score matrices S_i of adjacent layer pairs.

    S_i[m, n] = (1/|X|) · Σ_{x∈X} Σ_p |A_{i,m}(x)[p]| · |∂‖A_{i+1,n}(x)‖₂ / ∂A_{i,m}(x)[p]|

with `A_i` captured as a leaf (`ingest.cla.capture`), so the derivative only follows paths from `L_i`.

`attribute` is the engine: one forward pass per image batch captures every layer; each layer
pair then takes the fastest exact path that applies —

- a *fast plan* (`ingest.cla.plan`, `ingest.cla.fast`, `ingest.cla.residual`) when the modules
  between the cuts are conv/BN/ReLU/pool chains, optionally fanned out into concatenated branches
  (InceptionV1 blocks, GoogLeNet, catfish-mini, conv stacks) or summed with a skip (ResNet, CLIP
  and MobileNetV2 residual blocks): the last conv is handled for all downstream neurons at once
  and the rest runs as large matmuls, no autograd. A plan is used only after the probe image
  confirmed its forward values and, on sampled neurons, autograd's gradients (`ingest.cla.guard`),
  and only when it was clearly faster than the per-neuron loop on a batch of the run's size
  (`ingest.cla.path_choice`);
- the *transformer-block path* (`ingest.cla.vit_block`) for a pair across a standard pre-LN
  block (MLP → next MLP, heads → MLP, MLP → next heads): hand-written VJPs batched over units
  with the unit axis in the GEMMs, used where the probe verified them against autograd (when
  every pair of a batch has a fast plan or a verified span, its forward keeps no autograd graph;
  a span that does not reproduce the batch sends its pair to autograd on a second forward);
- the *token-MLP path* (`ingest.cla.token_mlp`) for a pair into a transformer block's MLP
  activation, act(fc1(u)) on (B, T, D) tokens: fc1's row is shared, the rest of the block's
  backward runs from fc1's input in chunks of units (batched VJPs) on the engine's forward graph;
- the *generic path* (`ingest.cla.generic`) for anything else: autograd, one call per neuron or
  batched VJPs (`is_grads_batched`), whichever was faster on the probe image.

The plan is made once per process for a model, its weights, the layers, the input shape and
the batch size (`ingest.cla.plan_cache`): a second call with the same ones does not probe or time
the paths again.

`ingest.cla.reference.attribute_reference` is the plain loop of the definition, one autograd call
per downstream neuron; tests check that both agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from catalog.errors import CircuitsError
from ingest.cla.block_span import NormInputs, Span, block_spans, record_norm_inputs
from ingest.cla.capture import capture, resolve_layers
from ingest.cla.fast import CPU_TILE_BYTES
from ingest.cla.generic import generic_pair_scores
from ingest.cla.path_choice import PathChoice, apply_choice, choose_paths
from ingest.cla.plan import matches
from ingest.cla.plan_cache import cached_plan, model_fingerprint, shared_plan
from ingest.cla.probe import Probe, fast_scores, prepared, probe, run_fast
from ingest.cla.search import Circuit, find_circuit
from ingest.cla.token_mlp import MlpCalls, mlp_layers, record_mlp_calls, token_mlp, token_mlp_scores
from ingest.cla.tokens import check_tokens, position_masks
from ingest.cla.vit_block import span_scores
from ingest.hooks import resolve_device

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "CLAError",
    "CLAMemoryError",
    "Circuit",
    "attribute",
    "describe_paths",
    "find_circuit",
]

DEFAULT_MAX_MEMORY = 2 * 1024**3  # bytes: fits a laptop or a shared CI runner; GoogLeNet, batch 32, runs in it
_HEADROOM = 0.8  # plan for this share of max_memory: allocator slack and BLAS workspaces take the rest

Progress = Callable[[int, int], None]


class CLAError(CircuitsError):
    """The inputs of an attribution are unusable (images, device, memory budget)."""


class CLAMemoryError(CLAError):
    """max_memory is too small for even one image."""


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise CLAError(f"images must be a torch.Tensor [N, C, H, W], got {type(images).__name__}")
    if images.ndim < 2 or images.shape[0] == 0:
        raise CLAError(f"images has shape {tuple(images.shape)}: expected a non-empty batch [N, C, H, W]")
    if not images.is_floating_point():
        raise CLAError(f"images has dtype {images.dtype}: pass preprocessed float images (the model's preprocessing)")


def attribute(
    model: nn.Module,
    layers: Sequence[str],
    images: torch.Tensor,
    *,
    batch_size: int = 32,
    device: str | torch.device = "auto",
    max_memory: int = DEFAULT_MAX_MEMORY,
    progress: Progress | None = None,
    fast: bool = True,
    batched_vjp: bool | None = None,
    tokens: str = "all",
) -> list[np.ndarray]:
    """CLA score matrices of every adjacent layer pair (docs/method.md, "Cross-Layer Attribution").

    Args:
        model: the network; its mode, device, dtype and requires_grad flags are restored after.
        layers: dotted module paths of the layers, in forward order (at least two).
        images: preprocessed float images, (N, C, H, W), on any device.
        batch_size: images per forward pass (lowered automatically to fit `max_memory`).
        device: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:1", …
        max_memory: bytes the attribution may use beyond the model's weights: captured layers,
            recorded forwards and per-chunk buffers are sized to stay under it (default 2 GiB).
        progress: called as progress(done, total) after each layer pair of each batch.
        fast: use structural fast paths where they apply (False: generic autograd everywhere).
        batched_vjp: generic path with batched VJPs (default: per pair, whichever of batched VJPs
            and one call per neuron was faster on the probe image; see `describe_paths`).
        tokens: which tokens of token layers count, "all", "patches" or "cls"
            (`ingest.cla.tokens`); other than "all", pairs into a transformer MLP activation
            take the token-MLP path and every other pair the generic path.

    Returns:
        S_i per adjacent pair, float32 numpy arrays of shape (C_i, C_{i+1}), in layer order.

    Raises:
        UnknownLayer, LayerOrderError, CaptureError: the layers are not usable cuts.
        CLAError: bad images; DeviceError: a bad device (`ingest.hooks`);
        CLAMemoryError: max_memory below one image's needs.
        TokenSelectionError: an unknown token selection, or one that leaves no tokens.
    """
    _check_images(images)
    token_fast = fast  # the token-MLP path (`ingest.cla.token_mlp`) also serves token selections
    fast = fast and check_tokens(tokens) == "all"
    if len(layers) < 2:
        raise CLAError("CLA needs at least two layers: pass the layers in forward order")
    resolve_layers(model, layers)
    dev = resolve_device(device)
    n_images = images.shape[0]
    with prepared(model, dev):
        first: dict[int, torch.Tensor] = {}  # scores the path choice computed, when it ran in this call
        info, bsz, chunk_budget, n_first = _planned(
            model, layers, images, dev, fast, batch_size, max_memory, batched_vjp, first, token_fast
        )
        plans = list(info.plans)
        tile = _tile(dev)
        n_pairs = len(plans)
        sums = [torch.zeros(a, b, dtype=torch.float64, device=dev) for a, b in zip(info.widths, info.widths[1:])]
        spans: list[Span | None] = [None] * n_pairs  # transformer-block spans the probe verified
        if token_fast and info.blocks and any(info.blocks):  # (`ingest.cla.vit_block`)
            spans = [span if ok else None for span, ok in zip(block_spans(model, layers), info.blocks)]
        total, done = math.ceil(n_images / bsz) * n_pairs, 0

        def add(i: int, scores: torch.Tensor) -> None:
            nonlocal done
            sums[i] += scores
            done += 1
            if progress is not None:
                progress(done, total)

        def by_autograd(i: int, leaves: list, outs: list, calls: MlpCalls, masks: list) -> torch.Tensor:
            """Pair i on the forward's graph: the token-MLP path into an MLP activation, else the
            generic path (batched VJPs or one call per neuron, as the probe chose)."""
            pair_masks = (masks[i], masks[i + 1])
            mlp = token_mlp(model, layers[i + 1], outs[i + 1], calls) if token_fast else None
            if mlp is not None:  # an MLP activation downstream: fc1's row shared
                batched = batched_vjp is not False
                return token_mlp_scores(
                    outs[i + 1], leaves[i], mlp, batched=batched, budget_bytes=chunk_budget, masks=pair_masks
                )
            return generic_pair_scores(
                outs[i + 1],
                leaves[i],
                batched=info.vjp_batched[i] if batched_vjp is None else batched_vjp,
                budget_bytes=chunk_budget,
                graph_bytes=info.graph_bytes * leaves[i].shape[0],
                masks=pair_masks,
            )

        if n_first != min(bsz, n_images):
            first = {}  # the choice was timed on another number of images than this first batch
        for b0 in range(0, n_images, bsz):
            x = images[b0 : b0 + bsz].to(dev, torch.float32)
            done_now = set(first) if b0 == 0 else set()  # exact scores of these images, from the choice
            for i in sorted(done_now):
                add(i, first[i])
            todo = [i for i in range(n_pairs) if i not in done_now]
            if not todo:
                continue
            # autograd's graph only for pairs without a fast plan or a verified block span
            grad = any(plans[i] is None and spans[i] is None for i in todo)
            leaves, outs, calls, norms = _forward(model, layers, x, grad, token_fast)
            masks = position_masks(layers, leaves, tokens)
            redo = []  # pairs whose fast plan or block span did not reproduce this batch
            for i in todo:
                plan, span = plans[i], spans[i]
                if plan is not None:
                    with torch.no_grad():
                        run = run_fast(plan, leaves[i].detach())
                        if matches(run, leaves[i + 1]):
                            add(i, fast_scores(plan, run, leaves[i].detach(), chunk_budget, tile))
                        else:  # data-dependent forward: autograd from here on
                            plans[i] = None
                            redo.append(i)
                    del run
                elif span is None:
                    add(i, by_autograd(i, leaves, outs, calls, masks))
                else:  # a transformer block span: the hand-written batched VJP
                    mlp = token_mlp(model, layers[i + 1], outs[i + 1], calls, graph=False)
                    block = span_scores(
                        span,
                        outs[i + 1],
                        leaves[i],
                        mlp,
                        norms,
                        budget_bytes=chunk_budget,
                        check_grad=False,
                        masks=(masks[i], masks[i + 1]),
                    )
                    if block is None:
                        spans[i] = None  # not reproduced: autograd from here on
                        redo.append(i)
                    else:
                        add(i, block)
            if redo and not grad:  # pairs that need autograd's graph, which this forward did not keep
                leaves, outs, calls, norms = _forward(model, layers, x, True, token_fast)
            for i in redo:
                add(i, by_autograd(i, leaves, outs, calls, masks))
            del leaves, outs, calls, norms
    return [(s / n_images).to(torch.float32).cpu().numpy() for s in sums]


def _planned(
    model: nn.Module,
    layers: Sequence[str],
    images: torch.Tensor,
    dev: torch.device,
    fast: bool,
    batch_size: int,
    max_memory: int,
    batched_vjp: bool | None,
    first: dict[int, torch.Tensor] | None = None,
    blocks: bool = False,
) -> tuple[Probe, int, int, int]:
    """(the plan, images per batch, chunk bytes, images in `first`) for these layers, input shape and batch size.

    Two steps, each made once per process and reused while the model's weights stay the same
    (`ingest.cla.plan_cache`): the probe on the first image (fast plans and their gradient
    checks, memory per image), keyed by the image shape; then the choice between each verified
    fast plan and the per-neuron loop, timed on the first images of the run as many as one batch
    holds (`ingest.cla.path_choice`), keyed by that batch size as well, and also reused by
    another object of the same model and weights (after its own probe). When the choice is made
    in this call, `first` receives the exact scores it computed for those images (per pair index)
    and their number is returned; else 0.
    """
    key = (tuple(layers), tuple(images.shape[1:]), str(dev), fast, blocks)
    fingerprint = model_fingerprint(model)
    info = cached_plan(
        model,
        key,
        lambda: probe(model, layers, images[:1].to(dev, torch.float32), fast=fast, blocks=blocks),
        fingerprint=fingerprint,
    )
    bsz, chunk_budget = _memory_plan(info, batch_size, images.shape[0], max_memory, batched_vjp)
    n_first = 0
    if any(p is not None for p in info.plans):
        n = _timing_batch(info, bsz, max_memory)
        probed, budget = info, chunk_budget

        def choose() -> PathChoice:
            nonlocal n_first
            n_first = n
            x = images[:n].to(dev, torch.float32)
            return choose_paths(model, layers, x, probed, budget_bytes=budget, tile_bytes=_tile(dev), first_sums=first)

        def chosen() -> Probe:  # a choice made on another object of this model and weights is reused
            verified = tuple(p is not None for p in probed.plans)
            return apply_choice(probed, shared_plan((*key, "paths at batch", n, verified, fingerprint), choose))

        info = cached_plan(model, (*key, "paths at batch", n), chosen, fingerprint=fingerprint)
        bsz, chunk_budget = _memory_plan(info, batch_size, images.shape[0], max_memory, batched_vjp)
    return info, bsz, chunk_budget, n_first


def _timing_batch(info: Probe, bsz: int, max_memory: int) -> int:
    """Images for timing the paths: the run's batch, or fewer where a forward pass that keeps
    autograd's graph (the loop's timing needs it) would not fit in half the budget."""
    per_image = info.leaf_bytes + info.forward_bytes + info.plan_bytes + info.graph_bytes
    return max(1, min(bsz, int(max_memory * _HEADROOM) // 2 // max(per_image, 1)))


def _tile(dev: torch.device) -> int | None:
    return CPU_TILE_BYTES if dev.type == "cpu" else None  # GPUs prefer the largest chunks


def _forward(
    model: nn.Module, layers: Sequence[str], x: torch.Tensor, grad: bool, token_fast: bool = False
) -> tuple[list[torch.Tensor], list[torch.Tensor], MlpCalls, NormInputs]:
    """One forward pass: leaves and outputs of every layer (graph-attached with `grad`), and (with
    `token_fast`) the fc1 calls feeding MLP activation layers (`ingest.cla.token_mlp`) and the
    LayerNorms' inputs (`ingest.cla.vit_block`)."""
    names = layers if token_fast else []
    with (
        capture(model, layers) as cap,
        record_mlp_calls(model, names) as calls,
        record_norm_inputs(model, active=bool(names)) as norms,
        torch.set_grad_enabled(grad),
    ):
        model(x)
        return cap.leaf_list(), cap.output_list(), calls, norms


def _memory_plan(
    info: Probe, batch_size: int, n_images: int, max_memory: int, batched_vjp: bool | None = None
) -> tuple[int, int]:
    """(images per forward, bytes for per-chunk buffers) within max_memory.

    Fast plans and batched VJPs work in chunks and get half the budget for them; when every pair
    runs the per-neuron autograd loop (which needs no chunks) the images get all of it, so the
    loop runs on batches as large as the reference's (resnet50 stage cuts at 224 px under the
    default 2 GiB: 8 images per batch instead of 4, half the autograd calls).
    """
    if batch_size < 1:
        raise CLAError(f"batch_size must be at least 1, got {batch_size}")
    budget = int(max_memory * _HEADROOM)
    generic = any(p is None for p in info.plans)
    batched = [b if batched_vjp is None else batched_vjp for b in info.vjp_batched]
    chunked = any(p is not None for p in info.plans) or any(b for b, p in zip(batched, info.plans) if p is None)
    share = 2 if chunked else 1
    per_image = info.leaf_bytes + info.forward_bytes + info.plan_bytes
    if generic:
        per_image += info.graph_bytes + info.generic_bytes
    if per_image > budget // share:
        raise CLAMemoryError(
            f"max_memory of {_fmt_bytes(max_memory)} is too small: one image needs about "
            f"{_fmt_bytes(share * per_image / _HEADROOM)}; raise max_memory or attribute fewer layers"
        )
    bsz = max(1, min(batch_size, n_images, (budget // share) // per_image))
    return bsz, budget - bsz * per_image


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def describe_paths(
    model: nn.Module,
    layers: Sequence[str],
    images: torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> list[str]:
    """Which path `attribute` takes for each layer pair, and why ("fast: …" or "generic: …").

    Args:
        model: the network.
        layers: dotted module paths, in forward order.
        images: the images `attribute` would get, (N, C, H, W): the first is probed, the first
            batch times the paths.
        device: where to run the probe.
        batch_size, max_memory: as `attribute` would get them (they set the batch the paths
            are timed on).

    Returns:
        One line per adjacent pair.
    """
    _check_images(images)
    dev = resolve_device(device)
    with prepared(model, dev):
        notes = list(_planned(model, layers, images, dev, True, batch_size, max_memory, None, None, True)[0].notes)
        if not mlp_layers(model, layers):
            return notes
        x = images[:1].to(dev, torch.float32)
        _, outs, calls, _ = _forward(model, layers, x, True, True)
        described = []
        for i, note in enumerate(notes):
            if note.startswith("generic") and token_mlp(model, layers[i + 1], outs[i + 1], calls) is not None:
                note = "token MLP: fc1's row shared, chunks of units through batched VJPs from fc1's input"
            described.append(note)
        return described
