"""`attribute` (fast plans and generic autograd) against `attribute_reference` (docs/method.md, "Cross-Layer Attribution")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cla_helpers import images as _images
from cla_helpers import (
    rel_err,
    verified_fast_paths,  # noqa: F401 (an autouse fixture: fast plans are tested here)
)
from test_cla_models import (
    INCEPTION_LAYERS,
    RESNET_LAYERS,
    STACK_LAYERS,
    InceptionNet,
    TinyResNet,
    TVUnit,
    conv_stack,
    seeded,
)
from torch import nn

import ingest.cla.fast as cla_fast
from ingest.cla.attribution import CLAError, CLAMemoryError, attribute, describe_paths
from ingest.cla.capture import capture
from ingest.cla.reference import attribute_reference


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and on a loaded shared CPU OpenMP threads that spin
    waiting for each other made these tests ~10x slower (65 s instead of 6 s here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def images(n: int = 3, size: int = 16, seed: int = 1) -> torch.Tensor:
    return _images(n, size, seed)


@pytest.fixture(scope="module")
def inception():
    model, x = seeded(InceptionNet), images(3)
    return model, x, attribute_reference(model, INCEPTION_LAYERS, x, batch_size=3)


def test_inception_fast_path_equals_reference(inception):
    model, x, ref = inception
    fast = attribute(model, INCEPTION_LAYERS, x, batch_size=3)
    assert [s.shape for s in fast] == [(16, 22), (22, 28), (28, 32)]
    assert rel_err(fast, ref) <= 1e-4


def test_generic_path_equals_reference_and_fast_path(inception):
    model, x, ref = inception
    generic = attribute(model, INCEPTION_LAYERS, x, batch_size=3, fast=False)
    assert rel_err(generic, ref) <= 1e-4
    batched = attribute(model, INCEPTION_LAYERS, x, batch_size=3, fast=False, batched_vjp=True)
    assert rel_err(batched, ref) <= 1e-4


def test_torchvision_style_inception_with_functional_relu():
    model, x = seeded(lambda: InceptionNet(TVUnit), 3), images(2, seed=4)
    ref = attribute_reference(model, INCEPTION_LAYERS, x)
    assert rel_err(attribute(model, INCEPTION_LAYERS, x), ref) <= 1e-4


def test_conv_stack_equals_reference():
    model, x = seeded(conv_stack, 2), images(3, seed=2)
    ref = attribute_reference(model, STACK_LAYERS, x, batch_size=2)
    assert rel_err(attribute(model, STACK_LAYERS, x, batch_size=2), ref) <= 1e-4


def test_residual_bottlenecks_equal_reference():
    model, x = seeded(TinyResNet, 5), images(2, seed=5)
    ref = attribute_reference(model, RESNET_LAYERS, x)
    assert rel_err(attribute(model, RESNET_LAYERS, x), ref) <= 1e-4


def test_dead_downstream_neuron_scores_zero_not_nan():
    model, x = seeded(InceptionNet, 6), images(2, seed=6)
    with torch.no_grad():
        model.b.branch2[1].bn.bias[3] = -1e4  # b's channel 8 + 3 is dead for every image
        model.b.branch1.bn.bias[0] = -1e4  # and channel 0 (closed-form branch)
    for result in (
        attribute(model, INCEPTION_LAYERS, x),
        attribute(model, INCEPTION_LAYERS, x, fast=False),
        attribute_reference(model, INCEPTION_LAYERS, x),
    ):
        s = result[1]
        assert np.all(np.isfinite(s))
        assert np.all(s[:, 11] == 0) and np.all(s[:, 0] == 0)
        assert s[:, 1].max() > 0
        assert np.all(result[2][11, :] == 0)  # a dead upstream neuron has no relevance either


def test_accumulation_over_batches_equals_one_batch(inception):
    model, x, _ = inception
    x = torch.cat([x, images(2, seed=9)])
    whole = attribute(model, INCEPTION_LAYERS, x, batch_size=5)
    parts = attribute(model, INCEPTION_LAYERS, x, batch_size=2)
    assert rel_err(parts, whole) <= 1e-5
    # the mean over images: the scores of the parts, weighted by their sizes
    first, second = attribute(model, INCEPTION_LAYERS, x[:3]), attribute(model, INCEPTION_LAYERS, x[3:])
    assert rel_err(whole, [(3 * a + 2 * b) / 5 for a, b in zip(first, second)]) <= 1e-5


def test_chunking_under_a_tiny_budget_gives_the_same_numbers(inception, monkeypatch):
    model, x, ref = inception
    chunks = []
    real = cla_fast._chunks

    def spy(n, b, per_unit, budget):
        out = real(n, b, per_unit, budget)
        chunks.append((n, b, *out))
        return out

    monkeypatch.setattr(cla_fast, "_chunks", spy)
    for max_memory in (600_000, 900_000, 1_200_000, 1_800_000, 2_400_000):  # the smallest that fits
        try:
            small = attribute(model, INCEPTION_LAYERS, x, max_memory=max_memory)
            break
        except CLAMemoryError:
            chunks.clear()
    assert rel_err(small, ref) <= 1e-4
    assert any(nc < n for n, _, nc, _ in chunks), "the tiny budget should split the neurons"


def test_chunks_over_neurons_and_images_sum_to_the_same_scores(inception, monkeypatch):
    from ingest.cla.plan import run_plan
    from ingest.cla.probe import prepared, probe

    model, x, _ = inception
    chunks = []
    real = cla_fast._chunks
    monkeypatch.setattr(cla_fast, "_chunks", lambda *a: chunks.append(real(*a)) or chunks[-1])
    with prepared(model, torch.device("cpu")), torch.no_grad():
        info = probe(model, INCEPTION_LAYERS, x[:1])
        with capture(model, INCEPTION_LAYERS) as cap:
            model(x)
            leaves = cap.leaf_list()
        for i, plan in enumerate(info.plans):
            run = run_plan(plan, leaves[i])
            whole = cla_fast.pair_scores(plan, run, leaves[i], 1 << 30)
            for budget in (1, 20_000):
                part = cla_fast.pair_scores(plan, run, leaves[i], budget)
                assert torch.allclose(part, whole, rtol=1e-5, atol=1e-6 * float(whole.abs().max()))
    assert (1, 1) in chunks, "a 1-byte budget runs one neuron and one image per chunk"
    assert any(nc > 1 and bc == x.shape[0] for nc, bc in chunks), "a large budget takes whole batches"


def test_budget_below_one_image_is_a_clear_error(inception):
    model, x, _ = inception
    with pytest.raises(CLAMemoryError, match="max_memory"):
        attribute(model, INCEPTION_LAYERS, x, max_memory=10_000)


def test_progress_reports_every_pair_of_every_batch(inception):
    model, x, _ = inception
    calls = []
    attribute(model, INCEPTION_LAYERS, x, batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(k, 6) for k in range(1, 7)]


def test_model_state_is_restored():
    model = seeded(InceptionNet, 7).double().train()
    model.stem[0].conv.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    attribute(model, INCEPTION_LAYERS, images(2).double())
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    assert list(model.parameters()) == params
    assert [p.requires_grad for p in params].count(False) == 1
    assert not model.stem[0].conv.weight.requires_grad
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_mismatching_structure_falls_back_to_generic():
    class Scaled(nn.Module):  # a hidden functional op the module trace cannot see
        def __init__(self) -> None:
            super().__init__()
            self.inner = InceptionNet()

        def forward(self, x):
            return self.inner(x)

    model = seeded(Scaled, 8)
    model.inner.b.forward = lambda x, blk=model.inner.b: 2.0 * type(blk).forward(blk, x)
    layers = ["inner." + n for n in INCEPTION_LAYERS]
    x = images(2, seed=8)
    notes = describe_paths(model, layers, x)
    assert notes[1].startswith("generic"), notes  # a -> b: b's output is not the plan's
    assert notes[0].startswith("fast") and notes[2].startswith("fast"), notes
    assert rel_err(attribute(model, layers, x), attribute_reference(model, layers, x)) <= 1e-4


def test_token_outputs_reduce_over_tokens():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU()).eval()
    x = torch.randn(3, 7, 4)  # (B, T, D)
    s = attribute(model, ["1", "3"], x)
    assert s[0].shape == (6, 5)
    assert rel_err(s, attribute_reference(model, ["1", "3"], x)) <= 1e-4


def test_bad_inputs_are_clear_errors(inception):
    model, x, _ = inception
    with pytest.raises(CLAError, match="float"):
        attribute(model, INCEPTION_LAYERS, (x * 255).to(torch.uint8))
    with pytest.raises(CLAError, match="two layers"):
        attribute(model, ["a"], x)
    with pytest.raises(CLAError, match="non-empty"):
        attribute(model, INCEPTION_LAYERS, x[:0])


@pytest.mark.slow
def test_googlenet_matches_reference_on_sampled_neurons():
    from torchvision.models import googlenet

    torch.manual_seed(0)
    model = googlenet(weights=None, init_weights=True, aux_logits=False).eval()
    layers = [
        "inception3a",
        "inception3b",
        "inception4a",
        "inception4b",
        "inception4c",
        "inception4d",
        "inception4e",
        "inception5a",
        "inception5b",
    ]
    x = torch.randn(2, 3, 224, 224)
    assert all(n.startswith("fast: inception-style block") for n in describe_paths(model, layers, x))
    fast = attribute(model, layers, x)
    cols = [list(range(0, s.shape[1], 37)) for s in fast]
    ref = attribute_reference(model, layers, x, neurons=cols)
    assert rel_err([f[:, c] for f, c in zip(fast, cols)], [r[:, c] for r, c in zip(ref, cols)]) <= 1e-4
