"""The gradient guard: a fast plan whose backward is not what its forward implies is rejected.

Each model here reproduces its forward exactly with a plan of conv/BN/ReLU units, so the forward
check alone accepts the plan; the backward differs (a custom autograd.Function or a hook), and
the fast path would compute the wrong scores. The guard must catch it, fall back to autograd,
say so in `describe_paths` and in the log, and `attribute` must then equal the reference.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from cla_helpers import images as _images
from cla_helpers import (
    rel_err,
    seeded,
    verified_fast_paths,  # noqa: F401 (an autouse fixture: fast plans are tested here)
)
from torch import nn
from torchvision.models.resnet import Bottleneck

from ingest.cla.attribution import attribute, describe_paths
from ingest.cla.guard import check_plan, sample_columns
from ingest.cla.plan_cache import clear_plan_cache
from ingest.cla.reference import attribute_reference


@pytest.fixture(autouse=True)
def _fresh_plans():
    """Tests here patch the probe's checks and timings: plans cached by another test must not hide them."""
    from ingest.cla.plan_cache import clear_plan_cache

    clear_plan_cache()
    yield
    clear_plan_cache()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads; spinning OpenMP threads slow a loaded shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LoudReLU(torch.autograd.Function):
    """ReLU forward; backward multiplies the gradient by 10 (a gradient-scaling op)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 10.0 * g * (x > 0)


class STEReLU(torch.autograd.Function):
    """ReLU forward; straight-through backward (the gradient passes unmasked)."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g):
        return g


def images(n: int = 2, size: int = 12, seed: int = 3) -> torch.Tensor:
    return _images(n, size, seed)


def relu_module(fn) -> type[nn.ReLU]:
    """An nn.ReLU subclass whose forward is `fn`: the module trace reads it as a plain ReLU."""

    class Act(nn.ReLU):
        def forward(self, x):
            return fn(x)

    return Act


class FnUnit(nn.Module):
    """conv → BN → activation module (a ReLU to the trace)."""

    def __init__(self, cin: int, cout: int, fn, **kw) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout)
        self.act = relu_module(fn)()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


def stack(inner, last) -> nn.Sequential:
    """Cuts 0, 2, 4: each pair is two units (inner activation, then the last one's)."""
    return nn.Sequential(
        FnUnit(3, 8, F.relu, kernel_size=3, padding=1),  # 0
        FnUnit(8, 10, inner, kernel_size=3, padding=1),
        FnUnit(10, 12, last, kernel_size=3, padding=1),  # 1, 2
        FnUnit(12, 9, inner, kernel_size=1),
        FnUnit(9, 8, last, kernel_size=3, padding=1),  # 3, 4
    )


LAYERS = ["0", "2", "4"]


def test_without_a_custom_backward_the_same_structure_takes_the_fast_path():
    model, x = seeded(lambda: stack(F.relu, F.relu)), images()
    notes = describe_paths(model, LAYERS, x)
    assert all(n.startswith("fast: conv chain") and "gradients checked on" in n for n in notes), notes
    assert rel_err(attribute(model, LAYERS, x), attribute_reference(model, LAYERS, x)) <= 1e-4


@pytest.mark.parametrize(
    "inner, last",
    [(LoudReLU.apply, F.relu), (F.relu, LoudReLU.apply), (STEReLU.apply, F.relu)],
    ids=["scaled-inner", "scaled-last", "straight-through"],
)
def test_custom_backward_takes_the_exact_path_and_matches_the_reference(inner, last, caplog):
    model, x = seeded(lambda: stack(inner, last)), images()
    with caplog.at_level(logging.WARNING, logger="ingest.cla.probe"):
        notes = describe_paths(model, LAYERS, x)
    assert all(n.startswith("generic: fast plan rejected by the gradient check") for n in notes), notes
    assert "custom backward" in notes[0]
    assert sum("rejected by the gradient check" in r.getMessage() for r in caplog.records) == len(notes)
    assert rel_err(attribute(model, LAYERS, x), attribute_reference(model, LAYERS, x)) <= 1e-4


def test_the_unguarded_fast_path_would_have_been_wrong():
    """The guard matters: forcing the fast plan on the scaled-ReLU model gives a tenth of autograd."""
    from ingest.cla.capture import capture
    from ingest.cla.plan import build_trees, concat_candidates, trace_leaf_calls
    from ingest.cla.probe import fast_scores, prepared, run_fast

    model, x = seeded(lambda: stack(LoudReLU.apply, F.relu)), images(1)
    with prepared(model, torch.device("cpu")), capture(model, LAYERS) as cap, trace_leaf_calls(model, LAYERS) as ev:
        with torch.enable_grad():
            model(x)
        leaves, outs = cap.leaf_list(), cap.output_list()
        plan = concat_candidates(build_trees(ev, LAYERS, leaves)[0])[0]
        run = run_fast(plan, leaves[0].detach())
        a = leaves[0].detach()
        result = check_plan(lambda cols: fast_scores(plan, run, a, 1 << 26, None, cols), outs[1], leaves[0])
    assert not result.ok and abs(result.error - 0.9) < 1e-3, result
    assert result.columns == sample_columns(outs[1])


def _halve_gradient(module, args, out):
    """A tensor hook on the module's output that halves its gradient (forward unchanged)."""
    if out.requires_grad:
        out.register_hook(lambda g: 0.5 * g)


def test_a_gradient_hook_inside_a_residual_block_is_caught():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
            self.block = Bottleneck(16, 4)
            self.block.bn2.register_forward_hook(_halve_gradient)

        def forward(self, x):
            return self.block(self.stem(x))

    model, x, layers = seeded(Net), images(), ["stem", "block"]
    clean = seeded(Net)
    clean.block.bn2._forward_hooks.clear()
    assert describe_paths(clean, layers, x)[0].startswith("fast: residual block")
    notes = describe_paths(model, layers, x)
    assert notes[0].startswith("generic: fast plan rejected by the gradient check"), notes
    assert rel_err(attribute(model, layers, x), attribute_reference(model, layers, x)) <= 1e-4


def test_a_fast_plan_slower_than_the_loop_on_the_batch_is_not_used(monkeypatch):
    import ingest.cla.path_choice as path_choice

    model, x = seeded(lambda: stack(F.relu, F.relu)), images()
    monkeypatch.setattr(path_choice, "NOISE_S", 0.0)  # the module's fixture keeps fast plans
    monkeypatch.setattr(path_choice, "time_pair", lambda *a, **k: (1.0, 1.05, None))  # fast not clearly faster
    notes = describe_paths(model, LAYERS, x)
    assert all(n.startswith("generic: the per-neuron loop beat the fast plan") for n in notes), notes
    assert rel_err(attribute(model, LAYERS, x), attribute_reference(model, LAYERS, x)) <= 1e-4
    clear_plan_cache()
    monkeypatch.setattr(path_choice, "time_pair", lambda *a, **k: (0.85, 1.0, None))  # and clearly faster: used
    assert all(n.startswith("fast: ") for n in describe_paths(model, LAYERS, x))


def test_the_paths_are_timed_on_the_runs_batch_not_one_image(monkeypatch):
    """EfficientNet-Lite0's case (docs/results.md): a fast plan 2x faster than the loop on one
    image and slower on the run's batch, where the loop shares its per-call overhead."""
    import ingest.cla.path_choice as path_choice

    seen: list[int] = []

    def timed(plan, out, leaf, **kw):  # seconds per batch: loop 2 s a call + 0.15 s per image
        b = leaf.shape[0]
        seen.append(b)
        return 1.0 * b, 2.0 + 0.15 * b, None  # fast 1.0 vs loop 2.15 on one image; 4.0 vs 2.6 on four

    model = seeded(lambda: stack(F.relu, F.relu))
    monkeypatch.setattr(path_choice, "NOISE_S", 0.0)
    monkeypatch.setattr(path_choice, "time_pair", timed)
    one = describe_paths(model, LAYERS, images(1), batch_size=4)
    assert all(n.startswith("fast: ") and "batch of 1: fast 1000.0 ms vs loop 2150.0 ms" in n for n in one), one
    x = images(6)
    notes = describe_paths(model, LAYERS, x, batch_size=4)
    assert all(n.startswith("generic: the per-neuron loop beat the fast plan (batch of 4") for n in notes), notes
    assert seen == [1, 1, 4, 4]  # two pairs, each timed once per batch size
    assert rel_err(attribute(model, LAYERS, x, batch_size=4), attribute_reference(model, LAYERS, x)) <= 1e-4
    assert seen == [1, 1, 4, 4]  # the run reused the choice


def test_generic_pairs_take_the_faster_autograd_form_on_the_probe(monkeypatch):
    from test_cla_models import RESNET_LAYERS, TinyResNet

    import ingest.cla.probe as cla_probe

    model, x = seeded(TinyResNet), images(2, size=16)
    notes = describe_paths(model, RESNET_LAYERS, x)
    assert all(n.startswith("generic") and "probe: per-neuron loop" in n for n in notes), notes
    monkeypatch.setattr(cla_probe, "time_generic", lambda *a, **k: (1.0, 0.1))  # batched "faster"
    clear_plan_cache()
    notes = describe_paths(model, RESNET_LAYERS, x)
    assert all("; batched VJPs (probe" in n for n in notes), notes
    assert rel_err(attribute(model, RESNET_LAYERS, x), attribute_reference(model, RESNET_LAYERS, x)) <= 1e-4


def test_where_batched_vjps_fail_the_probe_keeps_the_loop(monkeypatch):
    import ingest.cla.guard as cla_guard

    real = cla_guard.generic_pair_scores

    def no_vmap(*args, batched, **kw):  # as for an op vmap cannot batch
        if batched:
            raise RuntimeError("vmap: no batching rule")
        return real(*args, batched=batched, **kw)

    monkeypatch.setattr(cla_guard, "generic_pair_scores", no_vmap)
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).eval(), torch.randn(3, 4)
    notes = describe_paths(model, ["0", "2"], x)
    assert "one autograd call per neuron" in notes[0] and "batched inf ms" in notes[0], notes
    assert rel_err(attribute(model, ["0", "2"], x), attribute_reference(model, ["0", "2"], x)) <= 1e-4


def test_loop_only_runs_give_the_images_the_whole_budget():
    """The per-neuron loop needs no chunk memory: it gets batches as large as the reference's."""
    from ingest.cla.attribution import _memory_plan
    from ingest.cla.probe import Probe

    mib = 2**20  # resnet50 stage cuts at 224 px: ~172 MiB per image, mostly the autograd graph
    info = Probe(
        plans=[None],
        notes=[""],
        widths=[4, 4],
        leaf_bytes=10 * mib,
        graph_bytes=150 * mib,
        plan_bytes=0,
        generic_bytes=10 * mib,
        forward_bytes=2 * mib,
        vjp_batched=[False],
    )
    assert _memory_plan(info, 8, 8, 2 * 1024**3)[0] == 8
    assert _memory_plan(info, 8, 8, 2 * 1024**3, batched_vjp=True)[0] == 4  # batched VJPs need chunks


def test_a_plan_that_stops_reproducing_on_the_runs_batches_falls_back_to_autograd(monkeypatch, forward_grads):
    """A ReLU that is louder on batches of more than one image: the probe (one image) accepts the
    fast plan, the run's batches do not reproduce it, and those pairs are redone by autograd on a
    second forward that keeps the graph; the scores equal the reference."""
    import ingest.cla.path_choice as path_choice

    monkeypatch.setattr(path_choice, "NOISE_S", float("inf"))  # keep the fast plans whatever the timing

    def louder(x):
        return F.relu(x) * (1.0 if x.shape[0] == 1 else 1.5)

    model, x = seeded(lambda: stack(louder, F.relu)), images(4)
    assert rel_err(attribute(model, LAYERS, x, batch_size=2), attribute_reference(model, LAYERS, x)) <= 1e-4
    assert True in forward_grads and False in forward_grads  # a forward without a graph, then one with it
