"""Fast exact CLA for one layer pair with a structural plan (see `ingest.cla.plan`).

For downstream neuron n the cotangent `∂‖A_{i+1,n}‖₂/∂A_{i+1}` is non-zero in channel n only, and
channel n is produced by the last unit (conv → BN → ReLU) of one branch. So, for every n of a
branch at once:

1. the cotangent at that unit's conv output is `c_n = s_n · A_{i+1,n} / ‖A_{i+1,n}‖` (s_n the BN
   scale; the ReLU mask is implied because A is zero where the mask is), one map per neuron;
2. the last conv's input gradient for neuron n uses only its own filter `W[n]`: shifted copies of
   `c_n` times `W[n]`, one batched matmul over n, instead of C_n full backward passes (a grouped
   `conv_transpose2d` with C_n groups does the same and was measured far slower on CPUs);
3. the rest of the branch and the prefix run densely for a chunk of neurons at a time, in layout
   (n, C, b, P): BN/ReLU masks are elementwise, 1×1 convs are large matmuls (the bulk of the
   time, near the CPU's peak), other convs are `conv2d_input` with neurons folded into the batch,
   max-pools scatter their gradient;
4. `S[m, n] += Σ_{b,p} |A[b,m,p]| · |grad[n,m,b,p]|`.

Closed form: when the branch is a single 1×1 unit reached from `A_i` through max-pools only, the
gradient is `W[n,m] · c_n` routed by the pools, and because `c_n` has one sign (ReLU output)
`S[m, n] = |W[n,m]| · Σ_{b,p} |Z[b,m,p]| · |c_n[b,p]|` with Z the conv's input — one matmul.

A max-pool adjacent to `A_i` is scattered into a compact buffer (one slot per distinct argmax, at
its first pooled position) so the last step works at the pooled resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ingest.cla.plan import AvgPool, OpRecord, PairPlan, PlanRun, Pool, Unit

__all__ = ["pair_scores", "plan_supported"]

_FLOAT = 4  # bytes per float32 element
# CPU chunks this small stay mostly in cache: measured ~25% faster on googlenet than chunks of
# 100+ MB (2-core EPYC, 32 MiB L3). GPUs take chunks as large as the memory budget allows.
CPU_TILE_BYTES = 32 * 2**20


def plan_supported(plan: PairPlan) -> bool:
    """Whether every branch ends in a stride-1 unit whose padding the fast path can invert."""
    for ops in plan.branches:
        last = ops[-1]
        if not isinstance(last, Unit) or last.conv.groups != 1 or last.pads_input():
            return False
        pad = last.padding()
        c = last.conv
        if pad is None or any(s != 1 for s in c.stride):
            return False
        if any(p > d * (k - 1) for p, d, k in zip(pad, c.dilation, c.kernel_size)):
            return False
    for op in plan.prefix + tuple(o for ops in plan.branches for o in ops):
        if isinstance(op, Unit) and op.padding() is None:
            return False
    return True


@dataclass(frozen=True)
class Step:
    """One op of a branch with what its forward recorded; `first`: its input is A_i."""

    op: Unit | Pool | AvgPool
    rec: OpRecord
    first: bool


def pair_scores(
    plan: PairPlan,
    run: PlanRun,
    a: torch.Tensor,
    budget_bytes: int,
    tile_bytes: int | None = None,
    neurons: list[int] | None = None,
) -> torch.Tensor:
    """Σ over the batch of the CLA scores of one layer pair (not yet divided by |X|).

    Args:
        plan: the pair's verified plan.
        run: `run_plan(plan, a)` for this batch.
        a: A_i, (B, C_i, H, W).
        budget_bytes: memory for the per-chunk buffers; chunks over neurons and images fit in it.
        tile_bytes: a smaller, cache-friendly chunk size to aim for (CPUs), or None.
        neurons: only these downstream channels, ascending (the gradient guard's sample).

    Returns:
        float32 tensor (C_i, C_{i+1}), or (C_i, len(neurons)), on `a`'s device.
    """
    cols, start = [], 0
    for ops, recs in zip(plan.branches, run.branches):
        steps = [Step(o, r, k == 0) for k, (o, r) in enumerate(zip(plan.prefix + ops, run.prefix + recs))]
        width = recs[-1].y.shape[1]
        sel = None if neurons is None else [n - start for n in neurons if start <= n < start + width]
        start += width
        if sel == []:
            continue
        if _closed_form(steps):
            s = _closed_form_scores(steps)
            cols.append(s if sel is None else s[:, sel])
        else:
            cols.append(_dense_scores(steps, a, min(budget_bytes, tile_bytes or budget_bytes), sel))
    return torch.cat(cols, dim=1)  # (C_i, C_{i+1}) or (C_i, K)


def _cotangent(unit: Unit, y: torch.Tensor) -> torch.Tensor:
    """c_n = s_n · y_n / ‖y_n‖ per image (0 for an all-zero map), (B, N, Hq, Wq)."""
    norm = torch.linalg.vector_norm(y.flatten(2), dim=-1)  # (B, N)
    inv = torch.where(norm > 0, 1.0 / norm.clamp_min(torch.finfo(y.dtype).tiny), torch.zeros_like(norm))
    c = y * (inv * unit.scale()[None, :])[:, :, None, None]
    return c * (y < unit.cap) if unit.relu and unit.cap is not None else c  # a saturated ReLU6 is closed


def _closed_form(steps: list[Step]) -> bool:
    last = steps[-1].op
    assert isinstance(last, Unit)
    c = last.conv
    one_by_one = tuple(c.kernel_size) == (1, 1) and tuple(c.stride) == (1, 1) and last.padding() == (0, 0)
    pools_only = all(isinstance(s.op, Pool) for s in steps[:-1])
    one_sign = last.relu or len(steps) == 1  # pools merge positions: needs c_n of one sign
    return one_by_one and pools_only and bool(one_sign)


def _closed_form_scores(steps: list[Step]) -> torch.Tensor:
    last, rec = steps[-1].op, steps[-1].rec
    assert isinstance(last, Unit), "a branch ends in a unit (see _closed_form)"
    c = _cotangent(last, rec.y).abs()  # (B, N, H, W)
    z = rec.x.abs()  # (B, C_i, H, W): A_i routed by the pools
    n, ci = c.shape[1], z.shape[1]
    zc = z.transpose(0, 1).reshape(ci, -1)  # (C_i, B*P)
    cc = c.transpose(0, 1).reshape(n, -1)  # (N, B*P)
    w = last.conv.weight.reshape(n, ci).abs()  # (N, C_i)
    return (zc @ cc.T) * w.T  # (C_i, N)


def _dense_scores(steps: list[Step], a: torch.Tensor, budget_bytes: int, neurons: list[int] | None) -> torch.Tensor:
    # Layout of a chunk's gradients: neuron-major, channel, image, position: (n, C, b, P). 1x1
    # convs are then one matmul per neuron, and the final reduction runs over the contiguous
    # last dimension (measured ~2x faster here than reducing the middle dims of (n, b, P, C)).
    last_step = steps[-1]
    last = last_step.op
    assert isinstance(last, Unit)
    c = _cotangent(last, last_step.rec.y)  # (B, N, Hq, Wq)
    w_last = last.conv.weight.flip(-2, -1)  # (N, C_prev, kh, kw): the transposed conv's kernel
    if neurons is not None:
        c, w_last = c[:, neurons], w_last[neurons]
    b_total, n_total = c.shape[0], c.shape[1]
    ci = a.shape[1]
    first_pool = isinstance(steps[0].op, Pool) and len(steps) > 1
    aux = walk_aux(steps[:-1], compact=first_pool)
    # |A_i| at the resolution of the final reduction (a compact pool: the pool's output)
    absa = channel_major((steps[0].rec.y if first_pool else a).abs())  # (C_i, B, P)

    per_unit = elements_per_neuron_image(steps, compact=first_pool)
    nc, bc = _chunks(n_total, b_total, per_unit * _FLOAT, budget_bytes)
    out = torch.zeros(ci, n_total, device=a.device, dtype=torch.float32)
    for n0 in range(0, n_total, nc):
        n1 = min(n_total, n0 + nc)
        acc = torch.zeros(n1 - n0, ci, device=a.device, dtype=torch.float32)
        for b0 in range(0, b_total, bc):
            b1 = min(b_total, b0 + bc)
            cn = c[b0:b1, n0:n1].transpose(0, 1)  # (n, b, Hq, Wq)
            g = last_conv_input_grad(cn, w_last[n0:n1], last, last_step.rec.x)  # (n, C, b, P)
            g = walk_back(g, steps[:-1], aux, b0, b1, compact=first_pool)
            # Σ_{b,p} |A| |grad| over the contiguous last dims (mul, abs, sum in place: ~2.5x
            # faster here than vector_norm(ord=1) of the product)
            acc += g.mul_(absa[:, b0:b1]).abs_().flatten(2).sum(-1)  # (n, C_i)
        out[:, n0:n1] = acc.T
    return out


def walk_aux(steps: list[Step], compact: bool) -> list:
    """Per step, what its backward needs for every chunk: a unit's mask, a max-pool's indices."""
    aux: list = []
    for k, st in enumerate(steps):
        if isinstance(st.op, Unit):
            aux.append(_unit_mask(st))
        elif isinstance(st.op, Pool):
            aux.append(_pool_index(st, compact and k == 0))
        else:
            aux.append(None)
    return aux


def walk_back(g: torch.Tensor, steps: list[Step], aux: list, b0: int, b1: int, compact: bool) -> torch.Tensor:
    """A chunk's gradient at the output of `steps[-1]`, (n, C, b, P), back to the input of `steps[0]`.

    Dense: every neuron of the chunk carries a full gradient. `compact`: a max-pool first step
    stays at its pooled resolution (see `_pool_input_grad`).
    """
    for k in range(len(steps) - 1, -1, -1):
        st = steps[k]
        if isinstance(st.op, Unit):
            g.mul_(aux[k][:, b0:b1])
            g = _conv_input_grad(g, st.op, st.rec)
        elif isinstance(st.op, Pool):
            g = _pool_input_grad(g, aux[k], st.rec.x, b0, b1, compact=compact and k == 0)
        else:
            g = _avgpool_input_grad(g, st.op, st.rec)
    return g


def channel_major(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → contiguous (C, B, H·W)."""
    return t.flatten(2).transpose(0, 1).contiguous()


def _open(unit: Unit, y: torch.Tensor) -> torch.Tensor:
    """Where the unit's ReLU passes gradient, from its output: 0 < y (< cap for a ReLU6)."""
    return (y > 0) & (y < unit.cap) if unit.cap is not None else y > 0


def _unit_mask(step: Step) -> torch.Tensor:
    """d(unit output)/d(conv output) as (C, B, P): BN scale × ReLU mask."""
    unit, y = step.op, step.rec.y
    assert isinstance(unit, Unit), "_unit_mask is called on unit steps"
    s = unit.scale()[None, :, None, None]
    d = _open(unit, y) * s if unit.relu else s.expand_as(y)  # (B, C, H, W)
    return channel_major(d)


def _pool_index(step: Step, compact: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Argmax indices as (C, B, P_out), flat into H_in·W_in; for the pool adjacent to A_i also
    the compact slot of each pooled position (the first pooled position with the same argmax)."""
    assert step.rec.indices is not None, "a max-pool step records its argmax indices"
    idx = channel_major(step.rec.indices)  # (C, B, P_out)
    if not compact:
        return idx, None
    ch, b, p_out = idx.shape
    p_in = step.rec.x.shape[2] * step.rec.x.shape[3]
    order = torch.arange(p_out, device=idx.device).expand(ch, b, p_out)
    first = torch.full((ch, b, p_in), p_out, device=idx.device, dtype=torch.long)
    first.scatter_reduce_(2, idx, order, reduce="amin")  # per input position: first pooled position
    return idx, first.gather(2, idx)  # (C, B, P_out), slots in [0, P_out)


def last_conv_input_grad(cn: torch.Tensor, w_flip: torch.Tensor, unit: Unit, x: torch.Tensor) -> torch.Tensor:
    """Per neuron: the last conv's input gradient from channel n only.

    Args:
        cn: cotangents, (n, b, Hq, Wq).
        w_flip: the neurons' filters flipped spatially, (n, C_prev, kh, kw).
        unit: the unit (stride 1).
        x: the conv's input, (B, C_prev, H, W), for its shape.

    Returns:
        (n, C_prev, b, H·W).
    """
    n, b, hq, wq = cn.shape
    conv = unit.conv
    kh, kw = conv.kernel_size
    dh, dw = conv.dilation
    pad = unit.padding()
    assert pad is not None, "the fast path runs only convs with numeric padding"
    ph, pw = pad
    h, w = x.shape[2], x.shape[3]
    # the transposed conv's input: c padded so that every shifted window has the input's size
    ch, cw = dh * (kh - 1) - ph, dw * (kw - 1) - pw
    cpad = F.pad(cn, (cw, cw, ch, ch))  # (n, b, Hq + 2ch, Wq + 2cw)
    assert cpad.shape[2] - dh * (kh - 1) == h and cpad.shape[3] - dw * (kw - 1) == w, "stride-1 conv sizes"
    # shifted copies (an unfold from strided slices: im2col is slow for one channel)
    cols = torch.stack(
        [cpad[:, :, i * dh : i * dh + h, j * dw : j * dw + w] for i in range(kh) for j in range(kw)], dim=1
    )  # (n, K, b, H, W)
    wk = w_flip.reshape(n, w_flip.shape[1], kh * kw)  # (n, C_prev, K)
    g = torch.bmm(wk, cols.reshape(n, kh * kw, b * h * w))  # (n, C_prev, b*H*W)
    return g.view(n, -1, b, h * w)


def _conv_input_grad(g: torch.Tensor, unit: Unit, rec: OpRecord) -> torch.Tensor:
    """Dense input gradient of a unit's conv for a chunk (n, C_out, b, P) → (n, C_in, b, P_in)."""
    conv, x = unit.conv, rec.x
    n, co, b, p = g.shape
    w = conv.weight  # (C_out, C_in, kh, kw)
    pre = unit.input_padding(x.shape[2], x.shape[3])
    pointwise = tuple(conv.kernel_size) == (1, 1) and tuple(conv.stride) == (1, 1) and unit.padding() == (0, 0)
    if pointwise and conv.groups == 1 and pre is None:
        return torch.matmul(w.reshape(co, -1).T, g.view(n, co, b * p)).view(n, -1, b, p)  # one GEMM per neuron
    ho, wo = rec.y.shape[2], rec.y.shape[3]
    gi = g.view(n, co, b, ho, wo).transpose(1, 2).reshape(n * b, co, ho, wo)  # (n*b, C_out, Ho, Wo)
    xi = unit.input_grad(gi, (n * b, *x.shape[1:]))  # (n*b, C_in, H, W)
    return xi.reshape(n, b, x.shape[1], -1).transpose(1, 2).contiguous()  # (n, C_in, b, P_in)


def _avgpool_input_grad(g: torch.Tensor, op: AvgPool, rec: OpRecord) -> torch.Tensor:
    """Route a chunk's gradient (n, C, b, P_out) back through an average pool → (n, C, b, P_in)."""
    n, ch, b, _ = g.shape
    ho, wo = rec.y.shape[2], rec.y.shape[3]
    h, w = rec.x.shape[2], rec.x.shape[3]
    return avgpool_maps_grad(g.reshape(n * ch * b, ho, wo), op, h, w).view(n, ch, b, h * w)


def avgpool_maps_grad(g: torch.Tensor, op: AvgPool, h: int, w: int) -> torch.Tensor:
    """An average pool's input gradient for a stack of output-gradient maps (M, h_out, w_out),
    every map on its own (one channel each): (M, h, w) for an input of h × w."""
    p = op.pool
    xi = torch.ops.aten.avg_pool2d_backward(
        g.unsqueeze(1),
        g.new_empty(g.shape[0], 1, h, w),  # only its size is read
        _pair(p.kernel_size),
        _pair(p.stride if p.stride is not None else p.kernel_size),
        _pair(p.padding),
        p.ceil_mode,
        p.count_include_pad,
        p.divisor_override,
    )
    return xi.squeeze(1)


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(t) for t in v]


def _pool_input_grad(
    g: torch.Tensor, index: tuple[torch.Tensor, torch.Tensor | None], x: torch.Tensor, b0: int, b1: int, compact: bool
) -> torch.Tensor:
    """Route a chunk's gradient (n, C, b, P_out) back through a max-pool.

    With `compact` (the pool is adjacent to A_i) the result stays at the pooled resolution, one
    slot per distinct argmax; the final reduction then pairs it with the pool's output.
    """
    idx, slot = index
    n = g.shape[0]
    if compact:
        assert slot is not None, "_pool_index(compact=True) returns the slots"
        dst = torch.zeros_like(g)
        return dst.scatter_add_(3, slot[:, b0:b1].expand(n, -1, -1, -1), g)
    dst = g.new_zeros(*g.shape[:3], x.shape[2] * x.shape[3])
    return dst.scatter_add_(3, idx[:, b0:b1].expand(n, -1, -1, -1), g)  # (n, C, b, P_in)


def elements_per_neuron_image(steps: list[Step], compact: bool) -> int:
    """Peak float32 elements held per (neuron, image) of a chunk while walking the branch back."""
    last = steps[-1]
    assert isinstance(last.op, Unit), "a branch ends in a unit"
    kh, kw = last.op.conv.kernel_size
    x = last.rec.x
    hw = x.shape[2] * x.shape[3]
    size = hw * x.shape[1]  # gradient at the last conv's input
    peak = hw * kh * kw + size  # shifted cotangents + result
    for st in reversed(steps[:-1]):
        xin = st.rec.x
        nxt = xin.shape[1] * xin.shape[2] * xin.shape[3]
        if isinstance(st.op, Pool) and st.first and compact:
            nxt = st.rec.y[0].numel()  # compact: pooled resolution
        peak = max(peak, size + nxt + (nxt if isinstance(st.op, Unit) else 0))  # + conv workspace
        size = nxt
    return peak + size  # the final product with |A| is in place; the norm's output is small


def _chunks(n: int, b: int, bytes_per_unit: int, budget: int) -> tuple[int, int]:
    """(neurons, images) per chunk so that neurons × images × bytes_per_unit ≤ budget."""
    units = max(1, budget // max(1, bytes_per_unit))
    if units >= n * b:
        return n, b
    if units >= b:
        return max(1, units // b), b
    return 1, max(1, units)
