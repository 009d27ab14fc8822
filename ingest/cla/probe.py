"""Preparing a model for CLA: scoped model state, and a one-image probe pass.

`prepared` puts the model in eval mode, float32 on the compute device, with parameters not
requiring grad (so autograd records only what flows from the layer leaves), and restores every
one of those on exit.

`probe` runs one image with grad enabled and the layer hooks on, and learns what the batched
passes need: that each layer is computed from the previous one, a verified fast plan for each
layer pair where one applies (else the generic path, with the reason), the layer widths, and the
memory one image costs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ingest.cla.capture import CaptureError, capture, channels_first, check_layer_chain
from ingest.cla.fast import plan_supported
from ingest.cla.plan import PairPlan, build_plans, matches, run_plan, trace_leaf_calls

__all__ = ["Probe", "prepared", "probe"]

_FLOAT = 4


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
    move = any(
        dev != device or (dt.is_floating_point and dt != torch.float32) for _, _, _, dev, dt in placement
    )
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
        plans: per layer pair, the verified fast plan, or None for the generic path.
        notes: per layer pair, which path and why, for reports.
        widths: channels per layer.
        leaf_bytes: per image, the captured outputs of all layers.
        graph_bytes: per image, tensors autograd saves downstream of the first layer.
        plan_bytes: per image, the largest fast pair's recorded forward (0 without fast pairs).
        generic_bytes: per image, the largest generic pair's VJP scratch (0 without generic pairs).
        forward_bytes: per image, transient forward memory (twice the largest module output).
    """

    plans: list[PairPlan | None]
    notes: list[str]
    widths: list[int]
    leaf_bytes: int
    graph_bytes: int
    plan_bytes: int
    generic_bytes: int
    forward_bytes: int


def probe(model: nn.Module, layers: Sequence[str], image: torch.Tensor, *, fast: bool = True) -> Probe:
    """Run one image through the prepared model and plan the attribution.

    Args:
        model: the network, inside `prepared`.
        layers: dotted module paths, in forward order.
        image: one preprocessed input, (1, C, H, W), on the model's device.
        fast: look for fast plans (False: every pair takes the generic path).

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
        leaves = cap.leaf_list()
        candidates = build_plans(events, layers, leaves) if fast else [[] for _ in leaves[1:]]
        largest = max((ev.out.numel() for ev in events if getattr(ev, "out", None) is not None), default=0)
    widths = [int(channels_first(t).shape[1]) for t in leaves]
    plans: list[PairPlan | None] = []
    notes: list[str] = []
    plan_bytes = generic_bytes = 0
    for i, cands in enumerate(candidates):
        chosen, note = None, "generic: no chain of conv/BN/ReLU/max-pool modules between the layers"
        if not fast:
            note = "generic: fast paths disabled"
        for cand in cands:
            if not plan_supported(cand):
                note = "generic: a branch does not end in a stride-1 convolution unit"
                continue
            with torch.no_grad():
                run = run_plan(cand, leaves[i].detach())
            if matches(run, leaves[i + 1]):
                chosen, note = cand, _describe(cand)
                plan_bytes = max(plan_bytes, _run_bytes(run, leaves[i]))
                break
            note = "generic: the module structure does not reproduce the layer's output"
        if chosen is None:
            generic_bytes = max(generic_bytes, 4 * (leaves[i].numel() + leaves[i + 1].numel()) * _FLOAT)
        plans.append(chosen)
        notes.append(note)
    return Probe(
        plans=plans,
        notes=notes,
        widths=widths,
        leaf_bytes=sum(t.numel() for t in leaves) * _FLOAT,
        graph_bytes=sum(saved.values()),
        plan_bytes=plan_bytes,
        generic_bytes=generic_bytes,
        forward_bytes=2 * largest * _FLOAT,
    )


def _run_bytes(run, a: torch.Tensor) -> int:
    """Per-image bytes of a plan's recorded forward plus the masks and |A| copies built from it."""
    total = 2 * a.numel() * _FLOAT + run.output.numel() * _FLOAT
    for recs in [run.prefix, *run.branches]:
        for r in recs:
            total += 2 * r.y.numel() * _FLOAT  # output and its mask
            if r.indices is not None:
                total += 3 * r.indices.numel() * 8  # indices, channels-last copy, compact slots
    return total


def _describe(plan: PairPlan) -> str:
    def op_name(op) -> str:
        if hasattr(op, "pool"):
            return "maxpool"
        k = "x".join(str(v) for v in op.conv.kernel_size)
        return f"conv{k}" + ("+bn" if op.bn is not None else "") + ("+relu" if op.relu else "")

    prefix = " > ".join(op_name(o) for o in plan.prefix)
    branches = " | ".join(" > ".join(op_name(o) for o in b) for b in plan.branches)
    kind = "inception-style block" if len(plan.branches) > 1 else "conv chain"
    return f"fast: {kind}" + (f", prefix {prefix}" if prefix else "") + f": {branches}"
