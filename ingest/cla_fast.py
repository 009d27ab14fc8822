"""Fast exact CLA for one layer pair with a structural plan (see `ingest.cla_plan`).

For downstream neuron n the cotangent `∂‖A_{i+1,n}‖₂/∂A_{i+1}` is non-zero in channel n only, and
channel n is produced by the last unit (conv → BN → ReLU) of one branch. So, for every n of a
branch at once:

1. the cotangent at that unit's conv output is `c_n = s_n · A_{i+1,n} / ‖A_{i+1,n}‖` (s_n the BN
   scale; the ReLU mask is implied because A is zero where the mask is), one map per neuron;
2. the last conv's input gradient for neuron n uses only its own filter `W[n]`: shifted copies of
   `c_n` (unfold) times `W[n]` as one batched matmul over n — instead of C_n full backward passes;
3. the rest of the branch and the prefix run densely for a chunk of neurons at a time: BN/ReLU
   masks are elementwise, 1×1 convs are one large matmul in channels-last layout, other convs are
   `conv2d_input` with neurons folded into the batch, max-pools scatter their gradient;
4. `S[m, n] += Σ_{b,p} |A[b,m,p]| · |grad[n,b,m,p]|`.

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

from ingest.cla_plan import OpRecord, PairPlan, PlanRun, Pool, Unit

__all__ = ["pair_scores", "plan_supported"]

_FLOAT = 4  # bytes per float32 element


def plan_supported(plan: PairPlan) -> bool:
    """Whether every branch ends in a stride-1 unit whose padding the fast path can invert."""
    for ops in plan.branches:
        last = ops[-1]
        if not isinstance(last, Unit):
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
class _Step:
    op: Unit | Pool
    rec: OpRecord
    first: bool  # adjacent to A_i (its input is A_i)


def pair_scores(plan: PairPlan, run: PlanRun, a: torch.Tensor, budget_bytes: int) -> torch.Tensor:
    """Σ over the batch of the CLA scores of one layer pair (not yet divided by |X|).

    Args:
        plan: the pair's verified plan.
        run: `run_plan(plan, a)` for this batch.
        a: A_i, (B, C_i, H, W).
        budget_bytes: memory for the per-chunk buffers; chunks over neurons and images fit in it.

    Returns:
        float32 tensor (C_i, C_{i+1}) on `a`'s device.
    """
    cols = []
    for ops, recs in zip(plan.branches, run.branches):
        steps = [_Step(o, r, k == 0) for k, (o, r) in enumerate(zip(plan.prefix + ops, run.prefix + recs))]
        if _closed_form(steps):
            cols.append(_closed_form_scores(steps))
        else:
            cols.append(_dense_scores(steps, a, budget_bytes))
    return torch.cat(cols, dim=1)  # (C_i, C_{i+1})


def _cotangent(unit: Unit, y: torch.Tensor) -> torch.Tensor:
    """c_n = s_n · y_n / ‖y_n‖ per image (0 for an all-zero map), (B, N, Hq, Wq)."""
    norm = torch.linalg.vector_norm(y.flatten(2), dim=-1)  # (B, N)
    inv = torch.where(norm > 0, 1.0 / norm.clamp_min(torch.finfo(y.dtype).tiny), torch.zeros_like(norm))
    return y * (inv * unit.scale()[None, :])[:, :, None, None]


def _closed_form(steps: list[_Step]) -> bool:
    last = steps[-1].op
    assert isinstance(last, Unit)
    c = last.conv
    one_by_one = tuple(c.kernel_size) == (1, 1) and tuple(c.stride) == (1, 1) and last.padding() == (0, 0)
    pools_only = all(isinstance(s.op, Pool) for s in steps[:-1])
    one_sign = last.relu or len(steps) == 1  # pools merge positions: needs c_n of one sign
    return one_by_one and pools_only and bool(one_sign)


def _closed_form_scores(steps: list[_Step]) -> torch.Tensor:
    last, rec = steps[-1].op, steps[-1].rec
    c = _cotangent(last, rec.y).abs()  # (B, N, H, W)
    z = rec.x.abs()  # (B, C_i, H, W): A_i routed by the pools
    n, ci = c.shape[1], z.shape[1]
    zc = z.transpose(0, 1).reshape(ci, -1)  # (C_i, B*P)
    cc = c.transpose(0, 1).reshape(n, -1)  # (N, B*P)
    w = last.conv.weight.reshape(n, ci).abs()  # (N, C_i)
    return (zc @ cc.T) * w.T  # (C_i, N)


def _dense_scores(steps: list[_Step], a: torch.Tensor, budget_bytes: int) -> torch.Tensor:
    last_step = steps[-1]
    last = last_step.op
    assert isinstance(last, Unit)
    c = _cotangent(last, last_step.rec.y)  # (B, N, Hq, Wq)
    b_total, n_total = c.shape[0], c.shape[1]
    ci = a.shape[1]
    masks = [_unit_mask(s) if isinstance(s.op, Unit) else None for s in steps[:-1]]
    pools = [_pool_index(s) if isinstance(s.op, Pool) else None for s in steps[:-1]]
    first_pool = isinstance(steps[0].op, Pool) and len(steps) > 1
    # |A_i| in channels-last at the resolution of the final reduction
    final = steps[0].rec.y if first_pool else a
    absa = final.abs().permute(0, 2, 3, 1)  # (B, H, W, C_i)

    per_unit = _elements_per_neuron_image(steps)
    nc, bc = _chunks(n_total, b_total, per_unit * _FLOAT, budget_bytes)
    out = torch.zeros(ci, n_total, device=a.device, dtype=torch.float32)
    w_last = last.conv.weight.flip(-2, -1)  # (N, C_prev, kh, kw): the transposed conv's kernel
    for n0 in range(0, n_total, nc):
        n1 = min(n_total, n0 + nc)
        acc = torch.zeros(n1 - n0, ci, device=a.device, dtype=torch.float32)
        for b0 in range(0, b_total, bc):
            b1 = min(b_total, b0 + bc)
            g = _last_conv_input_grad(c[b0:b1, n0:n1].transpose(0, 1), w_last[n0:n1], last, steps[-1].rec.x)
            for k in range(len(steps) - 2, -1, -1):
                st = steps[k]
                if isinstance(st.op, Unit):
                    g.mul_(masks[k][b0:b1])
                    g = _conv_input_grad(g, st.op, st.rec.x)
                else:
                    g = _pool_input_grad(g, pools[k], st.rec.x, b0, b1, compact=(k == 0))
            # g: (n, b, H, W, C_i); |A| ⊙ g summed over images and positions, as an L1 norm
            acc += torch.linalg.vector_norm(g.mul_(absa[b0:b1]), ord=1, dim=(1, 2, 3))  # (n, C_i)
        out[:, n0:n1] = acc.T
    return out


def _unit_mask(step: _Step) -> torch.Tensor:
    """d(unit output)/d(conv output), channels-last (B, H, W, C): BN scale × ReLU mask."""
    unit, y = step.op, step.rec.y
    s = unit.scale()
    if unit.relu:
        return (y > 0).permute(0, 2, 3, 1) * s  # (B, H, W, C)
    return s.expand(y.shape[0], y.shape[2], y.shape[3], -1)


def _pool_index(step: _Step) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Channels-last argmax indices (B, P_out, C), and for the pool adjacent to A_i the compact
    slot of each pooled position (the first pooled position with the same argmax)."""
    idx = step.rec.indices.flatten(2).transpose(1, 2)  # (B, P_out, C), flat into H_in*W_in
    if not step.first:
        return idx.contiguous(), None
    b, p_out, ch = idx.shape
    p_in = step.rec.x.shape[2] * step.rec.x.shape[3]
    order = torch.arange(p_out, device=idx.device).view(1, p_out, 1).expand(b, p_out, ch)
    first = torch.full((b, p_in, ch), p_out, device=idx.device, dtype=torch.long)
    first.scatter_reduce_(1, idx, order, reduce="amin")  # per input position: first pooled position
    return idx.contiguous(), first.gather(1, idx).contiguous()  # (B, P_out, C) in [0, P_out)


def _last_conv_input_grad(cn: torch.Tensor, w_flip: torch.Tensor, unit: Unit, x: torch.Tensor) -> torch.Tensor:
    """Per neuron: the last conv's input gradient from channel n only, channels-last.

    Args:
        cn: cotangents, (n, b, Hq, Wq).
        w_flip: the neurons' filters flipped spatially, (n, C_prev, kh, kw).
        unit: the unit (stride 1).
        x: the conv's input, (B, C_prev, H, W), for its shape.

    Returns:
        (n, b, H, W, C_prev).
    """
    n, b, hq, wq = cn.shape
    conv = unit.conv
    kh, kw = conv.kernel_size
    dh, dw = conv.dilation
    ph, pw = unit.padding()
    h, w = x.shape[2], x.shape[3]
    # the transposed conv's input: c padded so that every shifted window has the input's size
    ch, cw = dh * (kh - 1) - ph, dw * (kw - 1) - pw
    cpad = F.pad(cn, (cw, cw, ch, ch))  # (n, b, Hq + 2ch, Wq + 2cw)
    assert cpad.shape[2] - dh * (kh - 1) == h and cpad.shape[3] - dw * (kw - 1) == w, "stride-1 conv sizes"
    # shifted copies (an unfold, built from strided slices: im2col is slow for one channel)
    cols = torch.stack(
        [cpad[:, :, i * dh : i * dh + h, j * dw : j * dw + w] for i in range(kh) for j in range(kw)], dim=-1
    )  # (n, b, H, W, K)
    wk = w_flip.reshape(n, w_flip.shape[1], kh * kw).transpose(1, 2)  # (n, K, C_prev)
    g = torch.bmm(cols.view(n, b * h * w, kh * kw), wk)  # (n, b*H*W, C_prev)
    return g.view(n, b, h, w, -1)


def _conv_input_grad(g: torch.Tensor, unit: Unit, x: torch.Tensor) -> torch.Tensor:
    """Dense input gradient of a unit's conv for a chunk, channels-last (n, b, H, W, C)."""
    conv = unit.conv
    n, b, ho, wo, co = g.shape
    w = conv.weight  # (C_out, C_in, kh, kw)
    if tuple(conv.kernel_size) == (1, 1) and tuple(conv.stride) == (1, 1) and unit.padding() == (0, 0):
        return torch.matmul(g, w.reshape(co, -1))  # (n, b, H, W, C_in): one large GEMM
    gi = g.reshape(n * b, ho, wo, co).permute(0, 3, 1, 2)  # (n*b, C_out, Ho, Wo), channels-last strides
    size = (n * b, x.shape[1], x.shape[2], x.shape[3])
    xi = torch.nn.grad.conv2d_input(size, w, gi, conv.stride, unit.padding(), conv.dilation, 1)
    return xi.permute(0, 2, 3, 1).contiguous().view(n, b, x.shape[2], x.shape[3], x.shape[1])


def _pool_input_grad(
    g: torch.Tensor, index: tuple[torch.Tensor, torch.Tensor | None], x: torch.Tensor, b0: int, b1: int, compact: bool
) -> torch.Tensor:
    """Route a chunk's gradient (n, b, Ho, Wo, C) back through a max-pool.

    With `compact` (the pool is adjacent to A_i) the result stays at the pooled resolution, one
    slot per distinct argmax; the final reduction then pairs it with the pool's output.
    """
    idx, slot = index
    n, b, ho, wo, ch = g.shape
    src = g.view(n, b, ho * wo, ch)
    if compact:
        dst = torch.zeros_like(src)
        dst.scatter_add_(2, slot[b0:b1].unsqueeze(0).expand(n, -1, -1, -1), src)
        return dst.view(n, b, ho, wo, ch)
    h, w = x.shape[2], x.shape[3]
    dst = src.new_zeros(n, b, h * w, ch)
    dst.scatter_add_(2, idx[b0:b1].unsqueeze(0).expand(n, -1, -1, -1), src)
    return dst.view(n, b, h, w, ch)


def _elements_per_neuron_image(steps: list[_Step]) -> int:
    """Peak float32 elements held per (neuron, image) of a chunk while walking the branch back."""
    last = steps[-1]
    kh, kw = last.op.conv.kernel_size
    x = last.rec.x
    hw = x.shape[2] * x.shape[3]
    size = hw * x.shape[1]  # gradient at the last conv's input
    peak = hw * kh * kw + size  # shifted cotangents + result
    for st in reversed(steps[:-1]):
        xin = st.rec.x
        nxt = xin.shape[1] * xin.shape[2] * xin.shape[3]
        if isinstance(st.op, Pool) and st.first:
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
