"""Structural plans for fast CLA: what lies between two layer cuts, when the fast path applies.

The fast path (`ingest.cla.fast`) needs to know the modules between layer `L_i` and `L_{i+1}`
as a small program it can differentiate by hand:

    A_i -> prefix ops -> fan out into branches -> each branch a chain of ops -> concat = A_{i+1}

where an op is a *unit* (Conv2d, optional BatchNorm2d in eval mode, optional ReLU) or a
MaxPool2d. That covers an InceptionV1 block (torchvision GoogLeNet, catfish-mini: 1×1 | 1×1→3×3 |
1×1→5×5 | maxpool→1×1, with a maxpool between blocks as prefix) and a plain conv stack (one
branch).

The plan is read from one traced forward pass (`trace_leaf_calls`): every leaf module call, with
the identity of its input and output tensors, links modules into a data-flow tree rooted at the
leaf of `L_i`. Functional ops are invisible to the trace (torchvision's `BasicConv2d` applies
`F.relu` in place), so a plan is only a *candidate*: `verify` recomputes `A_{i+1}` from `A_i`
with the plan and accepts it only if it reproduces the captured output. Anything that does not
match falls back to the generic exact path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Protocol

import torch
import torch.nn.functional as F
import torch.nn.grad
from torch import nn

__all__ = [
    "AvgPool",
    "OpRecord",
    "PairPlan",
    "PlanRun",
    "Pool",
    "Unit",
    "build_plans",
    "build_trees",
    "concat_candidates",
    "matches",
    "run_ops",
    "run_plan",
    "trace_leaf_calls",
]


@dataclass(frozen=True)
class Unit:
    """Conv2d → optional BatchNorm2d (eval) → optional ReLU. `relu` None: not yet known.

    `cap`: the ReLU clamps from above too (ReLU6: 6.0), as in MobileNetV2 blocks.
    """

    conv: nn.Conv2d
    bn: nn.BatchNorm2d | None
    relu: bool | None
    cap: float | None = None

    def scale(self) -> torch.Tensor:
        """d(unit pre-activation)/d(conv output) per output channel: the BN scale (1 without BN)."""
        w = self.conv.weight
        if self.bn is None:
            return torch.ones(w.shape[0], device=w.device, dtype=w.dtype)
        var = self.bn.running_var
        assert var is not None, "_parse admits only BatchNorms with running statistics"
        s = torch.rsqrt(var + self.bn.eps)
        return s * self.bn.weight if self.bn.weight is not None else s

    def padding(self) -> tuple[int, int] | None:
        """Numeric (ph, pw) padding of the conv, or None when it cannot be expressed that way."""
        c = self.conv
        if isinstance(c.padding, str):
            if c.padding == "valid":
                return (0, 0)
            if any(s != 1 for s in c.stride):
                return None
            total = [d * (k - 1) for d, k in zip(c.dilation, c.kernel_size)]
            if any(t % 2 for t in total):
                return None  # 'same' with an even receptive field pads asymmetrically
            return (total[0] // 2, total[1] // 2)
        return (int(c.padding[0]), int(c.padding[1]))

    def input_padding(self, h: int, w: int) -> tuple[int, int, int, int] | None:
        """(left, right, top, bottom) zeros the conv adds to an (h, w) input itself, before its `padding`.

        A Conv2d subclass padding at run time (TensorFlow's "SAME") says how by a method
        `input_padding(h, w)`. None: the module pads nothing itself.
        """
        f = getattr(self.conv, "input_padding", None)
        if not callable(f):
            return None
        left, right, top, bottom = (int(v) for v in f(int(h), int(w)))
        pad = (left, right, top, bottom)
        return pad if any(pad) else None

    def pads_input(self) -> bool:
        """Whether the conv pads its input itself at some input size (see `input_padding`)."""
        return any(self.input_padding(h, w) is not None for h, w in ((16, 16), (15, 15), (16, 15)))

    def input_grad(self, g: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """The conv's input gradient of shape `size` (N, C_in, H, W) from g (N, C_out, Ho, Wo);
        the module's own input padding included (the padded input's gradient, cropped)."""
        c = self.conv
        n, ci, h, w = size
        left, right, top, bottom = self.input_padding(h, w) or (0, 0, 0, 0)
        padded = (n, ci, h + top + bottom, w + left + right)
        gi = torch.nn.grad.conv2d_input(padded, c.weight, g, c.stride, self.padding(), c.dilation, c.groups)
        return gi[:, :, top : top + h, left : left + w] if padded != tuple(size) else gi


@dataclass(frozen=True)
class Pool:
    """A MaxPool2d module."""

    pool: nn.MaxPool2d


@dataclass(frozen=True)
class AvgPool:
    """An AvgPool2d module (CLIP's anti-aliased strided bottlenecks)."""

    pool: nn.AvgPool2d


Op = Unit | Pool | AvgPool


@dataclass(frozen=True)
class PairPlan:
    """A_{i+1} = concat over branches of branch(prefix(A_i)), channels in branch order."""

    prefix: tuple[Op, ...]
    branches: tuple[tuple[Op, ...], ...]


@dataclass(frozen=True)
class OpRecord:
    """What the plan's forward recorded for one op (one image batch).

    Attributes:
        x: the op's input, (B, C_in, H_in, W_in).
        y: the op's output, (B, C_out, H, W).
        indices: for a Pool, the argmax flat index into H_in·W_in per output, (B, C, H, W).
    """

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor | None = None


@dataclass(frozen=True)
class _Call:
    name: str
    module: nn.Module
    inp: torch.Tensor | None
    out: torch.Tensor | None


@dataclass(frozen=True)
class _Mark:
    kind: str  # "start" | "end"
    layer: str


@contextmanager
def trace_leaf_calls(model: nn.Module, layers: Sequence[str]) -> Iterator[list[_Call | _Mark]]:
    """Record, in call order, every leaf-module call and the start/end of each named layer.

    Register this *after* `ingest.cla.capture.capture` so a layer's end mark sees its leaf. Hooks are
    removed on exit; the yielded list holds references to the traced tensors.
    """
    events: list[_Call | _Mark] = []
    wanted = set(layers)
    handles = []

    def pre(name: str):
        def hook(module, args):
            events.append(_Mark("start", name))

        return hook

    def post(name: str, is_leaf: bool, is_layer: bool):
        def hook(module, args, output):
            if is_leaf:
                inp = args[0] if len(args) == 1 and isinstance(args[0], torch.Tensor) else None
                out = output if isinstance(output, torch.Tensor) else None
                events.append(_Call(name, module, inp, out))
            if is_layer:
                events.append(_Mark("end", name))

        return hook

    try:
        for name, module in model.named_modules():
            is_leaf = next(iter(module.children()), None) is None
            is_layer = name in wanted
            if is_layer:
                handles.append(module.register_forward_pre_hook(pre(name)))
            if is_leaf or is_layer:
                handles.append(module.register_forward_hook(post(name, is_leaf, is_layer)))
        yield events
    finally:
        for h in handles:
            h.remove()


def build_plans(
    events: Sequence[_Call | _Mark], layers: Sequence[str], leaves: Sequence[torch.Tensor]
) -> list[list[PairPlan]]:
    """Candidate plans per adjacent layer pair, most likely first (empty: no fast path).

    Args:
        events: the trace of one forward pass (see `trace_leaf_calls`).
        layers: layer names in forward order.
        leaves: the captured leaf of each layer in that pass.
    """
    return [concat_candidates(t) if t is not None else [] for t in build_trees(events, layers, leaves)]


def build_trees(
    events: Sequence[_Call | _Mark], layers: Sequence[str], leaves: Sequence[torch.Tensor]
) -> list[PairPlan | None]:
    """Per adjacent layer pair, the traced data-flow tree as an unresolved plan (None: no tree).

    Units whose ReLU was not seen have `relu=None`. Other planners (`ingest.cla.residual`) read
    the same tree differently (branches summed instead of concatenated).
    """
    pos: dict[tuple[str, str], int] = {}
    for k, ev in enumerate(events):
        if isinstance(ev, _Mark):
            pos.setdefault((ev.kind, ev.layer), k)
    out: list[PairPlan | None] = []
    for i in range(len(layers) - 1):
        a_end = pos.get(("end", layers[i]))
        b_start, b_end = pos.get(("start", layers[i + 1])), pos.get(("end", layers[i + 1]))
        if a_end is None or b_start is None or b_end is None or not a_end < b_start:
            out.append(None)
            continue
        calls = [(k, ev) for k, ev in enumerate(events[a_end + 1 : b_end], a_end + 1) if isinstance(ev, _Call)]
        out.append(_plan_from_calls(calls, leaves[i], b_start))
    return out


def _plan_from_calls(calls: list[tuple[int, _Call]], root: torch.Tensor, inside_from: int) -> PairPlan | None:
    """Data-flow tree from `root` through the traced calls → prefix chain + branch chains."""
    producer: dict[int, int] = {id(root): -1}  # tensor id -> call index (-1: the root)
    parent: dict[int, int] = {}
    children: dict[int, list[int]] = {}
    for j, (_, call) in enumerate(calls):
        if call.inp is None or id(call.inp) not in producer:
            continue  # not fed from the root's tree (or several inputs): not part of this plan
        parent[j] = producer[id(call.inp)]
        children.setdefault(parent[j], []).append(j)
        if call.out is not None:
            producer[id(call.out)] = j  # an in-place op re-produces its input tensor
    ends = [j for j in parent if j not in children and calls[j][0] > inside_from]
    if not ends:
        return None
    paths = []
    for e in ends:
        path, j = [], e
        while j != -1:
            path.append(j)
            j = parent[j]
        paths.append(path[::-1])
    n_common = 0
    if len(paths) > 1:
        while all(len(p) > n_common + 1 and p[n_common] == paths[0][n_common] for p in paths):
            n_common += 1
    rests = [p[n_common:] for p in paths]
    used = [j for r in rests for j in r]
    if len(used) != len(set(used)):
        return None  # nested fan-out inside a branch: not a supported structure
    prefix = _parse([calls[j][1].module for j in paths[0][:n_common]])
    branches = [_parse([calls[j][1].module for j in r]) for r in rests]
    parsed = [b for b in branches if b]  # a branch that is None (unsupported) or empty is dropped
    if prefix is None or len(parsed) != len(branches):
        return None
    return PairPlan(tuple(prefix), tuple(tuple(b) for b in parsed))


def _parse(modules: Sequence[nn.Module]) -> list[Op] | None:
    """A chain of leaf modules as ops, or None when a module is not supported."""
    ops: list[Op] = []
    for m in modules:
        last = ops[-1] if ops else None
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                return None
            ops.append(Unit(m, None, None))
        elif isinstance(m, nn.BatchNorm2d):
            if not isinstance(last, Unit) or last.bn is not None or last.relu is not None:
                return None
            if m.training or m.running_mean is None or m.running_var is None:
                return None
            ops[-1] = replace(last, bn=m)
        elif isinstance(m, nn.ReLU):
            if not isinstance(last, Unit) or last.relu is not None:
                return None
            ops[-1] = replace(last, relu=True)
        elif isinstance(m, nn.Hardtanh) and m.min_val == 0 and m.max_val > 0:  # ReLU6
            if not isinstance(last, Unit) or last.relu is not None:
                return None
            ops[-1] = replace(last, relu=True, cap=float(m.max_val))
        elif isinstance(m, nn.MaxPool2d):
            if m.return_indices:
                return None
            ops.append(Pool(m))
        elif isinstance(m, nn.AvgPool2d):
            ops.append(AvgPool(m))
        elif isinstance(m, nn.Identity) or (isinstance(m, nn.Dropout) and not m.training):
            continue
        else:
            return None
    return ops


def concat_candidates(plan: PairPlan) -> list[PairPlan]:
    """Resolve units whose ReLU is unknown (a functional ReLU is invisible): with, then without."""

    def fix(ops: tuple[Op, ...], relu: bool) -> tuple[Op, ...]:
        return tuple(replace(o, relu=relu) if isinstance(o, Unit) and o.relu is None else o for o in ops)

    out = []
    for relu in (True, False):
        cand = PairPlan(fix(plan.prefix, relu), tuple(fix(b, relu) for b in plan.branches))
        if cand not in out:
            out.append(cand)
    return out


def run_ops(ops: Sequence[Op], x: torch.Tensor) -> tuple[torch.Tensor, list[OpRecord]]:
    """Apply a chain of ops, recording each op's input, output (and pool indices).

    Args:
        ops: the chain.
        x: its input, (B, C, H, W).

    Returns:
        The output and one record per op.
    """
    records = []
    for op in ops:
        if isinstance(op, Unit):
            c = op.conv
            pad = op.input_padding(x.shape[2], x.shape[3])
            xp = F.pad(x, pad) if pad is not None else x
            z = F.conv2d(xp, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)
            if op.bn is not None:
                bn = op.bn
                z = F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
            y = (F.hardtanh(z, 0.0, op.cap) if op.cap is not None else F.relu(z)) if op.relu else z
            records.append(OpRecord(x, y))
        elif isinstance(op, AvgPool):
            p = op.pool
            y = F.avg_pool2d(
                x, p.kernel_size, p.stride, p.padding, p.ceil_mode, p.count_include_pad, p.divisor_override
            )
            records.append(OpRecord(x, y))
        else:
            mp = op.pool
            y, idx = F.max_pool2d(  # channels-last: ~10x faster than NCHW max-pooling on CPUs here
                x.contiguous(memory_format=torch.channels_last),
                mp.kernel_size,
                mp.stride,
                mp.padding,
                mp.dilation,
                ceil_mode=mp.ceil_mode,
                return_indices=True,
            )
            records.append(OpRecord(x, y, idx))
        x = y
    return x, records


@dataclass(frozen=True)
class PlanRun:
    """The plan's forward on one batch: records of the prefix and of each branch, and the output."""

    prefix: list[OpRecord]
    branches: list[list[OpRecord]]
    output: torch.Tensor  # (B, C_{i+1}, H, W)


def run_plan(plan: PairPlan, a: torch.Tensor) -> PlanRun:
    """Recompute A_{i+1} from A_i with the plan, recording what the backward needs.

    Args:
        plan: the pair's plan.
        a: layer i's activations, (B, C_i, H, W).

    Returns:
        The records and the concatenated output (B, C_{i+1}, H', W').
    """
    u, prefix = run_ops(plan.prefix, a)
    outs, branches = [], []
    for ops in plan.branches:
        y, recs = run_ops(ops, u)
        outs.append(y)
        branches.append(recs)
    if len({o.shape[2:] for o in outs}) != 1:
        return PlanRun(prefix, branches, torch.empty(0, device=a.device))  # cannot be concatenated
    return PlanRun(prefix, branches, torch.cat(outs, dim=1))


class _Run(Protocol):
    """A plan's forward on a batch (PlanRun, or a residual plan's ResidualRun)."""

    @property
    def output(self) -> torch.Tensor: ...


def matches(run: _Run, target: torch.Tensor) -> bool:
    """Whether the plan's output reproduces the captured layer output (float32 rounding aside)."""
    out, target = run.output, target.detach()
    if out.shape != target.shape:
        return False
    # relative to the layer's scale only: an absolute slack would let a wrong reading (a ReLU too
    # many) pass on a randomly initialised network whose activations are ~1e-7
    tol = 1e-4 * float(target.abs().max())
    return bool((out - target).abs().max() <= tol)
