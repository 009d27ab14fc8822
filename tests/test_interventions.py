"""Interventions (docs/method.md, "Interventions") on hand-built tiny models whose answers are computed directly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from catalog.errors import CircuitsError
from ingest.cla.capture import UnknownLayer
from ingest.cla.search import Circuit
from ingest.edit.interventions import (
    InterventionError,
    edge_fraction,
    evaluate,
    prune_circuit,
    prune_edges,
    random_circuit,
)

LAYERS = ["l0", "l1", "l2"]
CIRCUIT = [[1, 3], [0, 2, 4], [5]]


class SkipNet(nn.Module):
    """l0 → l1 → l2, plus a skip path from l0 that bypasses l1 (it must stay clean under edge pruning)."""

    def __init__(self):
        super().__init__()
        self.l0 = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
        self.l1 = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.ReLU())
        self.l2 = nn.Sequential(nn.Conv2d(5, 6, 1), nn.ReLU())
        self.skip = nn.Conv2d(4, 6, 1)
        self.fc = nn.Linear(6, 3)

    def tail(self, a0, a1):
        a2 = self.l2(a1) + self.skip(a0)
        return self.fc(a2.mean(dim=(2, 3)))

    def forward(self, x):
        a0 = self.l0(x)
        return self.tail(a0, self.l1(a0))


def zero(t, ch):
    t = t.clone()
    t[:, ch] = 0
    return t


@pytest.fixture
def net():
    torch.manual_seed(0)
    m = SkipNet().eval()
    with torch.no_grad():  # a positive bias keeps every l1 channel alive, so cuts are visible
        m.l1[0].bias.add_(0.5)
    return m


@pytest.fixture
def x():
    return torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(1))


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def record(model, names):
    """Forward hooks that append each named layer's output (registered last, so they see edits)."""
    seen = {n: [] for n in names}
    handles = [
        model.get_submodule(n).register_forward_hook(lambda _m, _i, o, n=n: seen[n].append(o.detach().clone()))
        for n in names
    ]
    return seen, handles


def test_circuit_pruning_zeroes_exactly_the_named_channels(net, x):
    with torch.no_grad():
        a0 = net.l0(x)
        clean = {"l0": a0, "l1": net.l1(a0)}
        with prune_circuit(net, LAYERS, CIRCUIT):
            seen, handles = record(net, ["l0", "l1", "l2"])
            out = net(x)
            for h in handles:
                h.remove()
        # Reference: the same arithmetic written out.
        r0 = zero(net.l0(x), CIRCUIT[0])
        r1 = zero(net.l1(r0), CIRCUIT[1])
        r2 = zero(net.l2(r1), CIRCUIT[2]) + net.skip(r0)
        ref = net.fc(r2.mean(dim=(2, 3)))
    assert torch.equal(out, ref)
    l0 = seen["l0"][0]
    assert torch.all(l0[:, CIRCUIT[0]] == 0)
    others = [c for c in range(4) if c not in CIRCUIT[0]]
    assert torch.equal(l0[:, others], clean["l0"][:, others])
    assert torch.all(seen["l1"][0][:, CIRCUIT[1]] == 0) and torch.all(seen["l2"][0][:, CIRCUIT[2]] == 0)
    assert clean["l1"][:, CIRCUIT[1]].abs().sum() > 0  # the test would notice a missing zeroing
    assert no_hooks(net)


@pytest.mark.parametrize("pair", [0, 1])
def test_edge_pruning_changes_only_the_circuits_downstream_channels(net, x, pair):
    src, dst = LAYERS[pair], LAYERS[pair + 1]
    with torch.no_grad():
        a0 = net.l0(x)
        a1 = net.l1(a0)
        clean = {"l0": a0, "l1": a1, "l2": net.l2(a1)}
        with prune_edges(net, LAYERS, CIRCUIT, pair=pair):
            seen, handles = record(net, [src, dst])
            out = net(x)
            for h in handles:
                h.remove()
        if pair == 0:
            corrupt = net.l1(zero(a0, CIRCUIT[0]))
            spliced = a1.clone()
            spliced[:, CIRCUIT[1]] = corrupt[:, CIRCUIT[1]]
            ref = net.tail(a0, spliced)  # the skip path still sees the clean l0
        else:
            corrupt = net.l2(zero(a1, CIRCUIT[1]))
            spliced = clean["l2"].clone()
            spliced[:, CIRCUIT[2]] = corrupt[:, CIRCUIT[2]]
            ref = net.fc((spliced + net.skip(a0)).mean(dim=(2, 3)))
    got = seen[dst][-1]  # the clean pass's L_{i+1} after splicing (the nested pass stops before this hook)
    dst_ch = CIRCUIT[pair + 1]
    others = [c for c in range(got.shape[1]) if c not in dst_ch]
    assert torch.equal(got[:, others], clean[dst][:, others])  # bit-identical
    assert torch.equal(got[:, dst_ch], corrupt[:, dst_ch])
    assert not torch.equal(got[:, dst_ch], clean[dst][:, dst_ch])  # the cut did something
    assert torch.equal(seen[src][0], clean[src])  # L_i itself stays clean in the continuing pass
    assert torch.equal(out, ref)
    assert no_hooks(net)


def test_edge_pruning_with_token_outputs():
    class Tok(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 6)
            self.b = nn.Linear(6, 5)
            self.head = nn.Linear(5, 2)

        def forward(self, x):  # x (B, N, 4)
            return self.head(self.b(self.a(x)).mean(dim=1))

    torch.manual_seed(0)
    m = Tok()
    x = torch.randn(2, 3, 4)
    with torch.no_grad(), prune_edges(m, ["a", "b"], [[0, 5], [2]]):
        out = m(x)
    with torch.no_grad():
        h = m.a(x)
        hz = h.clone()
        hz[..., [0, 5]] = 0
        b = m.b(h)
        b[..., 2] = m.b(hz)[..., 2]
        ref = m.head(b.mean(dim=1))
    assert torch.equal(out, ref)


def test_no_hooks_left_after_exceptions(net, x):
    with pytest.raises(RuntimeError, match="boom"):
        with prune_circuit(net, LAYERS, CIRCUIT):
            raise RuntimeError("boom")
    assert no_hooks(net)
    with pytest.raises(InterventionError, match="4 channels"):
        with torch.no_grad(), prune_circuit(net, LAYERS, [[9], [0], [0]]):
            net(x)
    assert no_hooks(net)
    with pytest.raises(InterventionError, match="5 channels"):
        with torch.no_grad(), prune_edges(net, LAYERS, [[0], [7], [0]]):
            net(x)
    assert no_hooks(net)
    with pytest.raises(UnknownLayer, match="did you mean l1"):
        with prune_edges(net, ["l0", "l1x", "l2"], CIRCUIT):
            pass
    assert no_hooks(net)


def test_edge_pruning_needs_forward_order(net, x):
    with pytest.raises(InterventionError, match="not computed from"):
        with torch.no_grad(), prune_edges(net, ["l1", "l0"], [[0], [0]]):
            net(x)
    assert no_hooks(net)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(layers=["l0"], channels=[[0], [1]]), "one list per layer"),
        (dict(layers=["l0", "l0"], channels=[[0], [1]]), "named twice"),
        (dict(layers=["l0", "l1"], channels=[[0], [1]], pair=1), "out of range"),
    ],
)
def test_prune_edges_argument_errors(net, kwargs, pattern):
    with pytest.raises(InterventionError, match=pattern):
        with prune_edges(net, **kwargs):
            pass
    assert issubclass(InterventionError, CircuitsError)


def test_random_circuit_is_seeded_and_shaped():
    a = random_circuit([10, 20, 5], [3, 4, 5], seed=7)
    assert a == random_circuit([10, 20, 5], [3, 4, 5], seed=7)
    assert a != random_circuit([10, 20, 5], [3, 4, 5], seed=8)
    assert [len(c) for c in a] == [3, 4, 5]
    assert all(c == sorted(set(c)) and 0 <= min(c) and max(c) < w for c, w in zip(a, [10, 20, 5]))
    assert a[2] == [0, 1, 2, 3, 4]
    assert [len(c) for c in random_circuit([6, 6], 2, seed=0)] == [2, 2]
    with pytest.raises(InterventionError, match="cannot draw 6"):
        random_circuit([5], [6], seed=0)


def test_edge_fraction_by_hand():
    widths, ch = [4, 5, 6], [[0], [1, 2], [3]]
    # circuit: (4·5 − 3·3) + (5·6 − 3·5) = 11 + 15 = 26 of 4·5 + 5·6 = 50
    assert edge_fraction(widths, ch, "circuit") == pytest.approx(26 / 50)
    assert edge_fraction(widths, ch, "edge", pair=0) == pytest.approx(2 / 50)
    assert edge_fraction(widths, ch, "edge", pair=1) == pytest.approx(2 / 50)
    assert edge_fraction([3, 3], [[0, 1, 2], [0]], "circuit") == 1.0
    with pytest.raises(InterventionError, match="unknown intervention kind"):
        edge_fraction(widths, ch, "both")


class PassThrough(nn.Module):
    """logits = (x_0, x_1) read from a (N, 2, 1, 1) input through two layers of identity weights."""

    def __init__(self):
        super().__init__()
        self.l0 = nn.Identity()
        self.l1 = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            self.l1.weight.copy_(torch.eye(2)[:, :, None, None])

    def forward(self, x):
        return self.l1(self.l0(x)).flatten(1)


def hand_metrics(logit_rows, labels, clean_rows):
    def softmax(r):
        e = [math.exp(v) for v in r]
        return [v / sum(e) for v in e]

    acc = sum(max(range(2), key=lambda j: r[j]) == y for r, y in zip(logit_rows, labels)) / len(labels)
    prob = sum(softmax(r)[y] for r, y in zip(logit_rows, labels)) / len(labels)
    kl = sum(
        sum(pc * math.log(pc / pi) for pc, pi in zip(softmax(c), softmax(r))) for c, r in zip(clean_rows, logit_rows)
    ) / len(labels)
    return acc, prob, kl


def test_metrics_match_hand_computation():
    model = PassThrough()
    xs = [[2.0, 0.5], [0.0, 1.0], [1.0, 3.0]]
    labels = [0, 1, 0]
    images = torch.tensor(xs)[:, :, None, None]
    model.train()
    res = evaluate(model, [[0], [0]], images, labels, layers=["l0", "l1"], kind="circuit", batch_size=2, device="cpu")
    assert model.training and no_hooks(model)
    # Pruning channel 0 (in either layer) sets logit 0 to zero.
    pruned = [[0.0, r[1]] for r in xs]
    acc, prob, kl = hand_metrics(pruned, labels, xs)
    assert res.intervened.accuracy == pytest.approx(acc) and acc == pytest.approx(1 / 3)
    assert res.intervened.true_prob == pytest.approx(prob)
    assert res.intervened.kl == pytest.approx(kl)
    acc, prob, _ = hand_metrics(xs, labels, xs)
    assert res.clean.accuracy == pytest.approx(acc) and acc == pytest.approx(2 / 3)
    assert res.clean.true_prob == pytest.approx(prob)
    assert res.clean.kl == 0.0
    base = [
        [
            0.0 if 0 in res.baseline_channels[1] or 0 in res.baseline_channels[0] else r[0],
            0.0 if 1 in res.baseline_channels[1] or 1 in res.baseline_channels[0] else r[1],
        ]
        for r in xs
    ]
    acc, prob, kl = hand_metrics(base, labels, xs)
    assert (res.baseline.accuracy, res.baseline.true_prob) == (pytest.approx(acc), pytest.approx(prob))
    assert res.baseline.kl == pytest.approx(kl)
    assert res.edge_fraction == pytest.approx((4 - 1) / 4) and res.n_images == 3
    assert res.baseline_edge_fraction == res.edge_fraction


def test_evaluate_edge_kind_matches_reference_and_accepts_a_circuit(net, x):
    labels = torch.tensor([0, 1, 2, 1])
    circ = Circuit(channels=CIRCUIT, objective_history=[0.0], sweeps=0, converged=False)
    res = evaluate(
        net, circ, x, labels, layers=LAYERS, kind="edge", pair=0, baseline_seed=3, batch_size=3, device="cpu"
    )
    with torch.no_grad():
        a0 = net.l0(x)
        a1 = net.l1(a0)

        def cut(ch):
            s = a1.clone()
            s[:, ch[1]] = net.l1(zero(a0, ch[0]))[:, ch[1]]
            return net.tail(a0, s)

        clean, inter, base = net(x), cut(CIRCUIT), cut(res.baseline_channels)
    lc = torch.log_softmax(clean.double(), 1)
    for got, logits in [(res.clean, clean), (res.intervened, inter), (res.baseline, base)]:
        lp = torch.log_softmax(logits.double(), 1)
        assert got.accuracy == pytest.approx((lp.argmax(1) == labels).double().mean().item())
        assert got.true_prob == pytest.approx(lp.gather(1, labels[:, None]).exp().mean().item(), rel=1e-6)
        assert got.kl == pytest.approx((lc.exp() * (lc - lp)).sum(1).mean().item(), rel=1e-5, abs=1e-9)
    assert res.intervened.kl > 0
    assert res.edge_fraction == pytest.approx(2 * 3 / (4 * 5 + 5 * 6))
    assert [len(c) for c in res.baseline_channels] == [2, 3, 1]
    assert no_hooks(net)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(kind="both"), "unknown intervention kind"),
        (dict(labels=[0, 1]), "one label per image"),
        (dict(labels=[0, 1, 2, 7]), "labels must lie"),
        (dict(channels=[[1, 3], [0, 9], [5]]), "5 channels"),
        (dict(kind="edge", pair=2), "out of range"),
    ],
)
def test_evaluate_errors(net, x, kwargs, pattern):
    args = dict(channels=CIRCUIT, labels=[0, 1, 2, 0], kind="circuit", pair=0)
    args.update(kwargs)
    with pytest.raises(InterventionError, match=pattern):
        evaluate(
            net, args["channels"], x, args["labels"], layers=LAYERS, kind=args["kind"], pair=args["pair"], device="cpu"
        )
    assert no_hooks(net)


class Guarded(SkipNet):
    """A user model that wraps its forward in `except Exception` and re-raises its own error."""

    def forward(self, x):
        try:
            return super().forward(x)
        except Exception as exc:
            raise RuntimeError("the guarded model failed") from exc


def test_edge_pruning_is_not_swallowed_by_a_models_except_exception(net, x):
    from ingest.edit.prune import _StopForward

    assert issubclass(_StopForward, BaseException) and not issubclass(_StopForward, Exception)
    guarded = Guarded().eval()
    guarded.load_state_dict(net.state_dict())
    with torch.no_grad():
        with prune_edges(net, LAYERS, CIRCUIT, pair=0):
            want = net(x)
        with prune_edges(guarded, LAYERS, CIRCUIT, pair=0):
            got = guarded(x)  # an Exception subclass would turn into "the guarded model failed"
    assert torch.equal(got, want) and not torch.equal(got, net(x))
    assert no_hooks(guarded)


def test_evaluate_leaves_the_callers_model_where_and_as_it_was(net, x):
    """Device, parameter objects, values and per-module train/eval modes are restored, also on error."""
    net.train()
    net.l1.eval()  # a mixed-mode model: a plain model.train(was_training) would lose this
    params = {n: (p, p.detach().clone()) for n, p in net.named_parameters()}
    labels = torch.tensor([0, 1, 2, 1])
    seen = []
    handle = net.l0.register_forward_hook(lambda m, i, o: seen.append((o.device.type, m.training)))
    try:
        evaluate(net, CIRCUIT, x, labels, layers=LAYERS, device="cpu")
        assert seen and all(s == ("cpu", False) for s in seen)  # it ran in eval mode
        seen.clear()
        with pytest.raises(Exception):  # noqa: B017 (any error: torch names it differently by version) "meta" tensors have no values: the run fails midway
            evaluate(net, CIRCUIT, x, labels, layers=LAYERS, device="meta")
        assert seen and seen[0] == ("meta", False)  # the model really was moved
    finally:
        handle.remove()
    assert net.training and net.l0.training and not net.l1.training and not net.l1[0].training
    for n, p in net.named_parameters():
        orig, value = params[n]
        assert p is orig and p.device.type == "cpu" and torch.equal(p, value), n
    assert no_hooks(net)


def test_metrics_are_named_from_the_shared_vocabulary():
    from catalog.vocab import Metric
    from ingest.edit.interventions import Metrics

    m = Metrics(accuracy=0.5, true_prob=0.25, kl=0.125)
    assert m.named() == {Metric.accuracy: 0.5, Metric.true_prob: 0.25, Metric.kl: 0.125}
    assert m.named(labelled=False) == {"agreement": 0.5, "clean_top1_prob": 0.25, "kl": 0.125}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_evaluate_on_cuda_leaves_a_cpu_model_on_the_cpu(net, x):
    params = {n: p for n, p in net.named_parameters()}
    res = evaluate(net, CIRCUIT, x, torch.tensor([0, 1, 2, 1]), layers=LAYERS, device="cuda")
    on_cpu = evaluate(net, CIRCUIT, x, torch.tensor([0, 1, 2, 1]), layers=LAYERS, device="cpu")
    assert res.intervened.accuracy == on_cpu.intervened.accuracy
    assert res.intervened.kl == pytest.approx(on_cpu.intervened.kl, abs=1e-5)
    assert all(p is params[n] and p.device.type == "cpu" for n, p in net.named_parameters())
