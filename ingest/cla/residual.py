"""Fast exact CLA for residual blocks: A_{i+1} = act(main(A_i) + skip(A_i)).

Covers a pair whose downstream layer is one residual block fed by the upstream layer: torchvision
ResNet `BasicBlock`/`Bottleneck` (identity skip or a strided 1×1 conv+BN downsample), CLIP's
modified ResNet bottleneck (average pool inside the main branch and before the downsample conv),
and inverted-residual blocks without an activation after the add. `main` is a chain of
conv(+BN)(+ReLU) units, max- and average-pools ending in a conv+BN unit; `skip` is empty (the
identity) or such a chain ending in a conv+BN unit; `act` is a ReLU after the add (or none).

Why it is fast — the channel-separable argument of `ingest.cla.fast` carries through the add:
the cotangent of ‖A_{i+1,n}‖ is `c_n = A_{i+1,n} / ‖A_{i+1,n}‖` in channel n only (the ReLU mask
is implied: A is zero where it is closed), and the add passes it unchanged to channel n of both
summands. So, for a chunk of (neuron, image) pairs at once, folded into one batch:

1. main branch: its last conv's input gradient for neuron n uses only the filter `W[n]` scaled by
   the BN scale s_n (an outer product for a 1×1 conv, shifted copies times `W[n]` otherwise);
   the rest of the branch runs densely per chunk: masks, oneDNN `conv2d_input` (GEMMs for 1×1
   convs where single-threaded oneDNN would fall back), pool scatters;
2. skip: the identity adds `c_n` to channel n of the gradient (a diagonal), a downsample conv+BN
   is handled like a last conv (a strided 1×1 conv puts `s_n · W[n, m] · c_n` onto its stride
   grid), then any pool before it;
3. `S[m, n] += Σ_p |A[b,m,p]| · |grad_main + grad_skip|[m,p]` per pair (n, b) — the two paths are
   summed before the absolute value, as autograd's gradient would be. Pairs whose block output
   map is all zero have a zero gradient and are skipped.

Compared with one autograd call per neuron this skips the main branch's last conv (4/17 of a
bottleneck's FLOPs, half of a basic block's), the elementwise passes over the full-width block
output, dead maps and autograd overheads; the middle 3×3 conv still costs one dense backward per
neuron, which bounds the gain on bottlenecks (measured ~2–3.5× per pair on resnet50 here). Like every fast plan, a residual plan is a candidate until `ingest.cla.probe` has seen
it reproduce the layer's output and, on sampled columns, autograd's gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ingest.cla.fast import Step, avgpool_maps_grad, elements_per_neuron_image, last_conv_input_grad
from ingest.cla.plan import Op, OpRecord, PairPlan, Pool, Unit, run_ops

__all__ = [
    "ResidualPlan",
    "ResidualRun",
    "residual_candidates",
    "residual_scores",
    "residual_unsupported",
    "run_residual",
]

_FLOAT = 4
_MIN_FOLD = 16
_SMALL_MAP = 32 * 32  # positions
_ONEDNN_1X1_BATCH = 16


@dataclass(frozen=True)
class ResidualPlan:
    """A_{i+1} = act(main(A_i) + skip(A_i)); an empty `skip` is the identity; `act`: a ReLU."""

    main: tuple[Op, ...]
    skip: tuple[Op, ...]
    act: bool


@dataclass(frozen=True)
class ResidualRun:
    """The plan's forward on one batch: records of both branches and the block output."""

    main: list[OpRecord]
    skip: list[OpRecord]
    output: torch.Tensor  # (B, C_{i+1}, H, W)


def residual_candidates(tree: PairPlan | None) -> list[ResidualPlan]:
    """Readings of a traced tree as a residual block, most likely first (empty: not one).

    The add is a functional op the trace cannot see: the tree's branches from A_i are read as the
    summands (one branch: the skip is the identity). A ReLU seen after the main branch's last BN
    is the block's final activation (torchvision adds in place, so its ReLU reads the BN output);
    an unseen one (CLIP adds out of place) is tried both ways.
    """
    if tree is None or tree.prefix or not 1 <= len(tree.branches) <= 2:
        return []
    b = tree.branches
    pairs = [(b[0], ())] if len(b) == 1 else [(b[0], b[1]), (b[1], b[0])]
    out: list[ResidualPlan] = []
    for main, skip in pairs:
        last = main[-1]
        if not isinstance(last, Unit) or last.bn is None:
            continue
        skip_last = skip[-1] if skip else None
        if skip and (not isinstance(skip_last, Unit) or skip_last.relu):
            continue
        acts = (True,) if last.relu else (True, False)
        for act in acts:
            for inner in (True, False):  # units whose functional ReLU the trace did not see
                m = _fix(main[:-1], inner) + (replace(last, relu=False),)
                s = _fix(skip[:-1], inner) + ((replace(skip_last, relu=False),) if isinstance(skip_last, Unit) else ())
                cand = ResidualPlan(m, s, act)
                if cand not in out:
                    out.append(cand)
    return out


def _fix(ops: tuple[Op, ...], relu: bool) -> tuple[Op, ...]:
    return tuple(replace(o, relu=relu) if isinstance(o, Unit) and o.relu is None else o for o in ops)


def residual_unsupported(plan: ResidualPlan) -> str | None:
    """Why the fast path cannot run this plan (None: it can)."""
    last = plan.main[-1]
    assert isinstance(last, Unit)
    if not _stride1_invertible(last) or last.conv.groups != 1 or last.pads_input():
        return "the residual branch does not end in a stride-1, ungrouped convolution"
    if plan.skip:
        s = plan.skip[-1]
        assert isinstance(s, Unit)
        if s.conv.groups != 1 or s.pads_input() or not (_strided_1x1(s) or _stride1_invertible(s)):
            return "the skip's convolution is grouped, or neither 1×1 nor stride 1"
    if any(isinstance(o, Unit) and o.padding() is None for o in plan.main + plan.skip):
        return "a convolution's padding cannot be inverted"
    return None


def _stride1_invertible(u: Unit) -> bool:
    c, pad = u.conv, u.padding()
    if pad is None or any(s != 1 for s in c.stride):
        return False
    return all(p <= d * (k - 1) for p, d, k in zip(pad, c.dilation, c.kernel_size))


def _strided_1x1(u: Unit) -> bool:
    return tuple(u.conv.kernel_size) == (1, 1) and u.padding() == (0, 0)


def run_residual(plan: ResidualPlan, a: torch.Tensor) -> ResidualRun:
    """Recompute A_{i+1} from A_i with the plan, recording what the backward needs.

    Args:
        plan: the pair's plan.
        a: layer i's activations, (B, C_i, H, W).

    Returns:
        The records and the block output (empty when the summands' shapes differ).
    """
    y_main, main = run_ops(plan.main, a)
    y_skip, skip = run_ops(plan.skip, a) if plan.skip else (a, [])
    if y_main.shape != y_skip.shape:
        return ResidualRun(main, skip, torch.empty(0, device=a.device))
    z = y_main + y_skip
    return ResidualRun(main, skip, F.relu(z) if plan.act else z)


def residual_scores(
    plan: ResidualPlan,
    run: ResidualRun,
    a: torch.Tensor,
    budget_bytes: int,
    tile_bytes: int | None = None,
    neurons: list[int] | None = None,
) -> torch.Tensor:
    """Σ over the batch of the CLA scores of one residual pair (not yet divided by |X|).

    Args:
        plan: the pair's verified plan.
        run: `run_residual(plan, a)` for this batch.
        a: A_i, (B, C_i, H, W).
        budget_bytes: memory for the per-chunk buffers.
        tile_bytes: a smaller, cache-friendly chunk size to aim for (CPUs), or None.
        neurons: only these downstream channels, ascending (the gradient guard's sample).

    Returns:
        float32 tensor (C_i, C_{i+1}), or (C_i, len(neurons)), on `a`'s device.
    """
    # A chunk is a list of live neurons of one image, folded into the batch of every convolution's
    # backward (oneDNN's conv2d_input: ~2x the GFLOP/s of per-neuron GEMMs here): gradients are
    # (u, C, H, W); the image's masks and |A_i| broadcast over the chunk (no gathered copies). A
    # pair whose block output map is all zero has a zero cotangent and is skipped (exact; 2–20% of
    # pairs in random-init resnet50, 30–45% in CLIP RN50's deeper blocks).
    y = run.output  # (B, N, H, W)
    cols = list(range(y.shape[1])) if neurons is None else list(neurons)
    sel = torch.tensor(cols, device=y.device, dtype=torch.long)
    y = y[:, sel]  # (B, n_sel, H, W)
    norm = torch.linalg.vector_norm(y.flatten(2), dim=-1)  # (B, n_sel)
    c = y / norm.clamp_min(torch.finfo(y.dtype).tiny)[:, :, None, None]  # ReLU mask implied: y = 0 there
    live = norm > 0  # (B, n_sel)
    main = _Branch(plan.main, run.main, sel)
    skip = _Branch(plan.skip, run.skip, sel) if plan.skip else None
    absa = a.abs().flatten(2)  # (B, C_i, P)
    ci, n_total = a.shape[1], len(cols)

    steps = [Step(o, r, False) for o, r in zip(plan.main, run.main)]
    per_unit = elements_per_neuron_image(steps, compact=False) + ci * absa.shape[2]
    if skip is not None:
        per_unit += ci * absa.shape[2]
    # On small maps, at least _MIN_FOLD pairs per chunk where the budget allows: single-threaded
    # oneDNN takes 1×1 convolutions only from a batch of 16, else a per-image GEMM fallback that is
    # slow on small maps (measured ~1.4x on resnet50 layer2/3 here); on large maps cache-sized
    # tiles win (~2x on layer1).
    fold = _MIN_FOLD if absa.shape[2] <= _SMALL_MAP else 1
    budget = min(budget_bytes, max(tile_bytes or budget_bytes, fold * per_unit * _FLOAT))
    acc = torch.zeros(n_total, ci, device=a.device, dtype=torch.float32)
    for b in range(y.shape[0]):
        ns_b = torch.nonzero(live[b]).flatten()  # this image's live neurons, ascending
        step = _pairs_per_chunk(len(ns_b), per_unit * _FLOAT, budget)
        for k0 in range(0, len(ns_b), step):
            ns = ns_b[k0 : k0 + step]  # (u,)
            cu = c[b, ns]  # (u, H, W)
            g = main.back(cu, ns, b)  # (u, C_i, H_i, W_i)
            if skip is not None:
                g += skip.back(cu, ns, b)
            else:  # identity: neuron n's cotangent lands on channel n of A_i
                g[torch.arange(len(ns), device=a.device), sel[ns]] += cu
            g = g.flatten(2).mul_(absa[b]).abs_()  # (u, C_i, P)
            acc.index_add_(0, ns, g.sum(-1))  # (n_sel, C_i)
    return acc.T.contiguous()  # (C_i, n_sel)


def _pairs_per_chunk(pairs: int, bytes_per_pair: int, budget: int) -> int:
    """How many (neuron, image) pairs a chunk takes so that it stays within `budget` bytes."""
    return max(1, min(pairs, budget // max(1, bytes_per_pair)))


class _Branch:
    """A branch's backward for chunks of (neuron, image) pairs, in layout (u, C, H, W)."""

    def __init__(self, ops: tuple[Op, ...], recs: list[OpRecord], sel: torch.Tensor) -> None:
        self.ops, self.recs = ops, recs
        last = ops[-1]
        assert isinstance(last, Unit)
        self.last = last
        w = last.conv.weight * last.scale()[:, None, None, None]  # BN scale folded into the filters
        self.w = w[sel]  # (n_sel, C_prev, kh, kw)
        self.aux: list[torch.Tensor | None] = []
        for op, rec in zip(ops[:-1], recs[:-1]):
            if isinstance(op, Unit):  # d(unit out)/d(conv out): BN scale × ReLU mask, (B, C, H, W)
                s = op.scale()[None, :, None, None]
                self.aux.append(_open(op, rec.y) * s if op.relu else s.expand_as(rec.y).contiguous())
            elif isinstance(op, Pool):
                assert rec.indices is not None, "a max-pool record keeps its argmax indices"
                self.aux.append(rec.indices.flatten(2))  # (B, C, P_out), flat into H_in·W_in
            else:
                self.aux.append(None)

    def back(self, cu: torch.Tensor, ns: torch.Tensor, b: int) -> torch.Tensor:
        """Gradient at A_i of neurons ns of image b from their cotangents cu (u, H, W): (u, C_i, H_i, W_i)."""
        g = self._last(cu, self.w[ns], self.recs[-1].x)  # (u, C, H, W)
        u = g.shape[0]
        for k in range(len(self.ops) - 2, -1, -1):
            op, x, aux = self.ops[k], self.recs[k].x, self.aux[k]
            if isinstance(op, Unit):
                assert aux is not None, "a unit keeps its mask in aux"
                g.mul_(aux[b])  # the image's mask, broadcast over the chunk
                g = _conv_input_grad(g, op, x)
            elif isinstance(op, Pool):
                dst = g.new_zeros(u, x.shape[1], x.shape[2] * x.shape[3])
                assert aux is not None, "a max-pool keeps its indices in aux"
                idx = aux[b].expand(u, -1, -1)
                g = dst.scatter_add_(2, idx, g.flatten(2)).view(u, *x.shape[1:])
            else:
                g = avgpool_maps_grad(g.reshape(-1, *g.shape[2:]), op, x.shape[2], x.shape[3]).view(u, *x.shape[1:])
        return g

    def _last(self, cu: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The last conv's input gradient, each pair through its neuron's filter only, (u, C_prev, H, W)."""
        unit = self.last
        u = cu.shape[0]
        if tuple(unit.conv.kernel_size) == (1, 1) and unit.padding() == (0, 0):
            sh, sw = unit.conv.stride
            outer = w.reshape(u, -1, 1, 1) * cu[:, None]  # (u, C_prev, Hq, Wq)
            if (sh, sw) == (1, 1):
                return outer
            g = cu.new_zeros(u, w.shape[1], x.shape[2], x.shape[3])
            grid = g[..., ::sh, ::sw]  # the positions a strided 1×1 conv reads
            assert grid.shape == outer.shape, "strided 1x1 conv sizes"
            grid.copy_(outer)
            return g
        g = last_conv_input_grad(cu[:, None], w.flip(-2, -1), unit, x)  # (u, C_prev, 1, P), stride 1
        return g.view(u, w.shape[1], x.shape[2], x.shape[3])


def _conv_input_grad(g: torch.Tensor, unit: Unit, x: torch.Tensor) -> torch.Tensor:
    """A unit's conv input gradient for a chunk, (u, C_out, Ho, Wo) → (u, C_in, H, W)."""
    conv = unit.conv
    u = g.shape[0]
    pointwise = tuple(conv.kernel_size) == (1, 1) and tuple(conv.stride) == (1, 1) and unit.padding() == (0, 0)
    pointwise = pointwise and unit.input_padding(x.shape[2], x.shape[3]) is None
    if pointwise and conv.groups == 1 and u < _ONEDNN_1X1_BATCH and torch.get_num_threads() == 1:
        # single-threaded oneDNN skips 1×1 convs below a batch of 16; PyTorch's fallback ran at
        # ~14 GFLOP/s here, a plain GEMM per pair at several times that
        w = conv.weight.reshape(conv.out_channels, conv.in_channels)  # (C_out, C_in)
        return torch.matmul(w.T, g.flatten(2)).view(u, conv.in_channels, *g.shape[2:])
    return unit.input_grad(g, (u, *x.shape[1:]))


def _open(unit: Unit, y: torch.Tensor) -> torch.Tensor:
    return ((y > 0) & (y < unit.cap) if unit.cap is not None else y > 0).to(y.dtype)
