"""Preparing a model for CLA: scoped model state, and a one-image probe pass.

`prepared` puts the model in eval mode, float32 on the compute device, with parameters not
requiring grad (so autograd records only what flows from the layer leaves), and restores every
one of those on exit.

`probe` runs one image with grad enabled and the layer hooks on, and learns what the batched
passes need: that each layer is computed from the previous one, a fast plan for each layer pair
where one applies — verified on the forward values, and on sampled neurons against autograd's
gradients (`ingest.cla.guard`) — else the generic path and its faster autograd form, with the
reason for each; the layer widths; and the memory one image costs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ingest.cla.block_span import block_span, record_norm_inputs
from ingest.cla.capture import CaptureError, capture, channels_first, check_layer_chain
from ingest.cla.fast import CPU_TILE_BYTES, pair_scores, plan_supported
from ingest.cla.guard import check_plan, time_generic
from ingest.cla.plan import (
    AvgPool,
    PairPlan,
    PlanRun,
    Pool,
    build_trees,
    concat_candidates,
    matches,
    run_plan,
    trace_leaf_calls,
)
from ingest.cla.residual import (
    ResidualPlan,
    ResidualRun,
    residual_candidates,
    residual_scores,
    residual_unsupported,
    run_residual,
)
from ingest.cla.token_mlp import record_mlp_calls, token_mlp
from ingest.cla.vit_block import block_reproduced

__all__ = ["FastPlan", "Probe", "fast_scores", "prepared", "probe", "run_fast"]

_FLOAT = 4
_log = logging.getLogger(__name__)
# Whether a verified fast plan or the per-neuron loop runs a pair is decided on a batch of the
# run's size (`ingest.cla.path_choice`): one probe image flatters the fast path.
# batched VJPs replace the plain loop (the reference's own method) only when twice as fast on the
# probe: one image flatters them (resnet50 stage cuts: 0.8x the loop's time on the probe, while
# `attribute` took 173 s when the probe could pick them and 142 s with the loop; shared CPU)
_BATCHED_MARGIN = 0.5

FastPlan = PairPlan | ResidualPlan


@contextmanager
def prepared(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Eval mode, float32 (no TF32) on `device`, parameters frozen; everything restored on exit.

    Args:
        model: the network.
        device: where to compute.

    Yields:
        The same model object.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    placement = []  # (module, "_parameters"|"_buffers", key, device, dtype)
    for m in model.modules():
        for kind in ("_parameters", "_buffers"):
            for key, t in getattr(m, kind).items():
                if t is not None:
                    placement.append((m, kind, key, t.device, t.dtype))
    move = any(dev != device or (dt.is_floating_point and dt != torch.float32) for _, _, _, dev, dt in placement)
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        # full float32 on GPUs too: TF32 convolutions (cuDNN's default) would cost ~1e-3 accuracy
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        if move:
            model.to(device=device, dtype=torch.float32)
        yield model
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        if move:
            for m, kind, key, dev, dt in placement:
                t = getattr(m, kind)[key]
                if kind == "_parameters":
                    t.data = t.data.to(device=dev, dtype=dt)  # keeps the Parameter object
                else:
                    getattr(m, kind)[key] = t.to(device=dev, dtype=dt)
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


@dataclass(frozen=True)
class Probe:
    """What one probe image taught about the model and layers.

    Attributes:
        plans: per layer pair, the verified fast plan (concatenated branches or a residual block),
            or None for the generic path.
        notes: per layer pair, which path and why, for reports.
        widths: channels per layer.
        leaf_bytes: per image, the captured outputs of all layers.
        graph_bytes: per image, tensors autograd saves downstream of the first layer.
        plan_bytes: per image, the largest fast pair's recorded forward (0 without fast pairs).
        generic_bytes: per image, the largest generic pair's VJP scratch (0 without generic pairs).
        forward_bytes: per image, transient forward memory (twice the largest module output).
        vjp_batched: per layer pair taking the generic path, whether batched VJPs
            (`is_grads_batched`) beat one autograd call per neuron on the probe; False for fast pairs.
    """

    plans: list[FastPlan | None]
    notes: list[str]
    widths: list[int]
    leaf_bytes: int
    graph_bytes: int
    plan_bytes: int
    generic_bytes: int
    forward_bytes: int
    vjp_batched: list[bool] = field(default_factory=list)
    blocks: list[bool] = field(default_factory=list)


def probe(
    model: nn.Module, layers: Sequence[str], image: torch.Tensor, *, fast: bool = True, blocks: bool = False
) -> Probe:
    """Run one image through the prepared model and plan the attribution.

    Args:
        model: the network, inside `prepared`.
        layers: dotted module paths, in forward order.
        image: one preprocessed input, (1, C, H, W), on the model's device.
        fast: look for fast plans (False: every pair takes the generic path).
        blocks: look for transformer-block spans (`ingest.cla.vit_block`); one whose recomputed
            forward and hand-written VJP match autograd on the probe image is marked in
            `Probe.blocks` and its generic forms are not timed.

    Returns:
        The probe's findings.

    Raises:
        UnknownLayer, LayerOrderError, CaptureError: the layers are not usable cuts.
    """
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        saved[st.data_ptr()] = st.nbytes()
        return t

    with (
        capture(model, layers) as cap,
        trace_leaf_calls(model, layers) as events,
        record_mlp_calls(model, layers if blocks else []) as calls,
        record_norm_inputs(model, active=blocks) as norms,
        torch.enable_grad(),
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
    ):
        try:
            model(image)
        except RuntimeError as err:
            if "leaf Variable that requires grad" not in str(err):
                raise
            raise CaptureError(
                "a layer's output is modified in place downstream (e.g. by ReLU(inplace=True)): "
                "name the module after the in-place op (the ReLU) as the layer"
            ) from err
        check_layer_chain(cap)
        leaves, outs = cap.leaf_list(), cap.output_list()
        trees = build_trees(events, layers, leaves) if fast else [None for _ in leaves[1:]]
        largest = max((out.numel() for ev in events if (out := getattr(ev, "out", None)) is not None), default=0)
        del events
    widths = [int(channels_first(t).shape[1]) for t in leaves]
    plans: list[FastPlan | None] = []
    notes: list[str] = []
    vjp_batched: list[bool] = []
    block_ok: list[bool] = []
    plan_bytes = generic_bytes = 0
    for i, tree in enumerate(trees):
        chosen, note, run = _choose(tree, leaves[i], leaves[i + 1], outs[i + 1], layers[i : i + 2], fast)
        batched = False
        span = block_span(model, layers[i], layers[i + 1]) if blocks and chosen is None else None
        mlp = token_mlp(model, layers[i + 1], outs[i + 1], calls) if span is not None else None
        block_ok.append(span is not None and block_reproduced(span, outs[i + 1], leaves[i], mlp, norms))
        if block_ok[-1]:
            assert span is not None
            generic_bytes = max(generic_bytes, 4 * (leaves[i].numel() + leaves[i + 1].numel()) * _FLOAT)
            note = (
                f"transformer block ({span.kind}): hand-written VJP batched over units "
                "(values and a random cotangent's gradient checked against autograd on the probe image)"
            )
        elif chosen is None:
            generic_bytes = max(generic_bytes, 4 * (leaves[i].numel() + leaves[i + 1].numel()) * _FLOAT)
            t_loop, t_batched = time_generic(outs[i + 1], leaves[i], 1 << 28, graph_bytes=sum(saved.values()))
            batched = t_batched < _BATCHED_MARGIN * t_loop
            form = "batched VJPs" if batched else "one autograd call per neuron"
            note += f"; {form} (probe: per-neuron loop {t_loop * 1e3:.1f} ms vs batched {t_batched * 1e3:.1f} ms)"
        else:
            assert run is not None, "_choose returns a plan with its run"
            plan_bytes = max(plan_bytes, _run_bytes(run, leaves[i]))
        plans.append(chosen)
        notes.append(note)
        vjp_batched.append(batched)
    return Probe(
        plans=plans,
        notes=notes,
        widths=widths,
        leaf_bytes=sum(t.numel() for t in leaves) * _FLOAT,
        graph_bytes=sum(saved.values()),
        plan_bytes=plan_bytes,
        generic_bytes=generic_bytes,
        forward_bytes=2 * largest * _FLOAT,
        vjp_batched=vjp_batched,
        blocks=block_ok,
    )


def _choose(
    tree: PairPlan | None,
    leaf: torch.Tensor,
    nxt: torch.Tensor,
    out: torch.Tensor,
    names: Sequence[str],
    fast: bool,
) -> tuple[FastPlan | None, str, PlanRun | ResidualRun | None]:
    """(plan or None, note, the plan's run on the probe image) for one layer pair.

    Candidates are tried in order (concatenated branches, then residual readings); one that
    reproduces A_{i+1} is checked against autograd on sampled neurons (`check_plan`); whether it
    beats the per-neuron loop is decided later, on a batch (`ingest.cla.path_choice`). A failed check moves on to the next reading that reproduces the
    output (two readings can agree on values, e.g. with or without a ReLU on a layer that happens
    to be non-negative); when none passes, the pair takes the generic path.
    """
    if not fast:
        return None, "generic: fast paths disabled", None
    if tree is None:
        return None, "generic: no chain of conv/BN/ReLU/pool modules between the layers", None
    note = (
        "generic: the modules between the layers are not one conv chain, inception-style block or "
        "residual block that reproduces the layer's output (several residual blocks between two "
        "cuts, e.g. ResNet stage outputs, need autograd: cut at block outputs)"
    )
    unsupported: list[str] = []
    rejected: str | None = None
    candidates: list[FastPlan] = [*concat_candidates(tree), *residual_candidates(tree)]
    for cand in candidates:
        why = residual_unsupported(cand) if isinstance(cand, ResidualPlan) else _pair_unsupported(cand)
        if why is not None:
            unsupported.append(why)
            continue
        with torch.no_grad():
            run = run_fast(cand, leaf.detach())
        if not matches(run, nxt):
            continue
        a = leaf.detach()
        guard = check_plan(
            lambda cols: fast_scores(cand, run, a, 1 << 28, CPU_TILE_BYTES, cols),  # noqa: B023 (called here)
            out,
            leaf,
            repeats=1,  # its timings are not used: the path is timed on a batch (`ingest.cla.path_choice`)
        )
        pair = f"{names[0]} -> {names[1]}"
        if not guard.ok:
            why = (
                "no downstream neuron is active on the probe image"
                if not guard.columns
                else f"rel. error {guard.error:.2g} on neurons {guard.columns}: a custom backward "
                "(autograd.Function, straight-through estimator, gradient hook)?"
            )
            _log.info("CLA %s: a fast reading failed the gradient check (%s)", pair, why)
            rejected = rejected or why
            continue
        checked = f"gradients checked on {len(guard.columns)} neurons (rel. error {guard.error:.1g})"
        return cand, f"{_describe(cand)}; {checked}", run
    if rejected is not None:
        _log.warning("CLA %s -> %s: fast plan rejected by the gradient check (%s); using autograd", *names, rejected)
        return None, f"generic: fast plan rejected by the gradient check ({rejected})", None
    if unsupported:
        note += f"; as read from the modules: {unsupported[0]}"
    return None, note, None


def _pair_unsupported(plan: PairPlan) -> str | None:
    return None if plan_supported(plan) else "a branch does not end in a stride-1 convolution unit"


def run_fast(plan: FastPlan, a: torch.Tensor) -> PlanRun | ResidualRun:
    """The plan's forward on a batch (A_i: (B, C_i, H, W)); its `output` is the plan's A_{i+1}."""
    return run_residual(plan, a) if isinstance(plan, ResidualPlan) else run_plan(plan, a)


def fast_scores(
    plan: FastPlan,
    run: PlanRun | ResidualRun,
    a: torch.Tensor,
    budget_bytes: int,
    tile_bytes: int | None = None,
    neurons: list[int] | None = None,
) -> torch.Tensor:
    """Σ over the batch of S for one pair by its fast plan, (C_i, C_{i+1}) or (C_i, len(neurons))."""
    if isinstance(plan, ResidualPlan):
        assert isinstance(run, ResidualRun), "a residual plan's run comes from run_residual"
        return residual_scores(plan, run, a, budget_bytes, tile_bytes, neurons)
    assert isinstance(run, PlanRun), "a pair plan's run comes from run_plan"
    return pair_scores(plan, run, a, budget_bytes, tile_bytes, neurons)


def _run_bytes(run: PlanRun | ResidualRun, a: torch.Tensor) -> int:
    """Per-image bytes of a plan's recorded forward plus the masks and |A| copies built from it."""
    total = 2 * a.numel() * _FLOAT + 2 * run.output.numel() * _FLOAT  # |A|, A_{i+1} and its cotangent
    groups = [run.main, run.skip] if isinstance(run, ResidualRun) else [run.prefix, *run.branches]
    for recs in groups:
        for r in recs:
            total += 2 * r.y.numel() * _FLOAT  # output and its mask
            if r.indices is not None:
                total += 3 * r.indices.numel() * 8  # indices, channels-last copy, compact slots
    return total


def _op_name(op) -> str:
    if isinstance(op, Pool):
        return "maxpool"
    if isinstance(op, AvgPool):
        return "avgpool"
    k = "x".join(str(v) for v in op.conv.kernel_size)
    kind = f"conv{k}" + (f"/g{op.conv.groups}" if op.conv.groups != 1 else "")
    act = ("+relu6" if op.cap == 6 else f"+relu(max {op.cap:g})") if op.relu and op.cap is not None else "+relu"
    return kind + ("+bn" if op.bn is not None else "") + (act if op.relu else "")


def _describe(plan: FastPlan) -> str:
    if isinstance(plan, ResidualPlan):
        main = " > ".join(_op_name(o) for o in plan.main)
        skip = " > ".join(_op_name(o) for o in plan.skip) if plan.skip else "identity"
        return f"fast: residual block, {'relu' if plan.act else 'no activation'} after ({main}) + ({skip})"
    prefix = " > ".join(_op_name(o) for o in plan.prefix)
    branches = " | ".join(" > ".join(_op_name(o) for o in b) for b in plan.branches)
    kind = "inception-style block" if len(plan.branches) > 1 else "conv chain"
    return f"fast: {kind}" + (f", prefix {prefix}" if prefix else "") + f": {branches}"
