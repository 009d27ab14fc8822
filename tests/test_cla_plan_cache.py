"""The CLA plan is made once per process for a model, its weights, the layers and the input shape:
a second `attribute` call does not probe again, and any change of weights, layers, input shape or
hooks makes a new plan (whose scores still equal the reference loop's). The choice between each
verified fast plan and the per-neuron loop is timed on a batch of the run's size and cached with
the batch size in the key, and reused by another object of the same model and weights."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest
import torch
from cla_helpers import images, rel_err, seeded
from torch import nn

from ingest.cla.attribution import attribute, describe_paths
from ingest.cla.plan_cache import clear_plan_cache, model_fingerprint, plan_cache_info
from ingest.cla.reference import attribute_reference

LAYERS = ["1", "3", "5"]
cla_attribute = sys.modules["ingest.cla.attribution"]


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 5, 1),
        nn.ReLU(),
    )


@pytest.fixture
def probes(monkeypatch):
    """Counts the probe passes `attribute` makes."""
    clear_plan_cache()
    calls: list[tuple] = []
    real = cla_attribute.probe

    def counting(model, layers, image, **kw):
        calls.append((tuple(layers), tuple(image.shape)))
        return real(model, layers, image, **kw)

    monkeypatch.setattr(cla_attribute, "probe", counting)
    yield calls
    clear_plan_cache()


@pytest.fixture
def choices(monkeypatch):
    """Counts the path timings `attribute` makes: the batch shape each was timed on."""
    clear_plan_cache()
    calls: list[tuple] = []
    real = cla_attribute.choose_paths

    def counting(model, layers, batch, info, **kw):
        calls.append(tuple(batch.shape))
        return real(model, layers, batch, info, **kw)

    monkeypatch.setattr(cla_attribute, "choose_paths", counting)
    yield calls
    clear_plan_cache()


def test_a_second_call_does_not_probe_again(probes, choices):
    model, x = seeded(_net), images(3, 12, 0)
    first = attribute(model, LAYERS, x, device="cpu")
    assert len(probes) == 1 and choices == [(3, 3, 12, 12)]  # the paths timed on the run's batch
    second = attribute(model, LAYERS, x, device="cpu")
    assert len(probes) == 1 and len(choices) == 1 and plan_cache_info()["hits"] == 2  # probe + paths
    assert rel_err(second, first) == 0
    describe_paths(model, LAYERS, x)  # the same plan, reported
    assert len(probes) == 1 and len(choices) == 1
    attribute(model, LAYERS, images(3, 12, 1), device="cpu")  # other images, same shapes: the same plan
    assert len(probes) == 1 and len(choices) == 1


def test_the_path_choice_is_cached_per_batch_size(probes, choices):
    model = seeded(_net)
    attribute(model, LAYERS, images(3, 12, 0), device="cpu")
    attribute(model, LAYERS, images(5, 12, 1), device="cpu")  # a batch of 5: one probe, paths timed again
    attribute(model, LAYERS, images(7, 12, 2), device="cpu", batch_size=5)  # batches of 5: that choice
    attribute(model, LAYERS, images(3, 12, 3), device="cpu")
    assert len(probes) == 1
    assert choices == [(3, 3, 12, 12), (5, 3, 12, 12)]
    describe_paths(model, LAYERS, images(9, 12, 0), batch_size=5)  # reports the same choice
    assert len(choices) == 2


def test_another_object_of_the_same_model_reuses_the_path_choice(probes, choices):
    """A model loaded again (same structure and weights, another object) is probed, since its plans
    refer to its own modules, but the paths are not timed again; other weights time them again."""
    x = images(3, 12, 0)
    first = attribute(seeded(_net), LAYERS, x, device="cpu")
    again = seeded(_net)
    second = attribute(again, LAYERS, x, device="cpu")
    assert len(probes) == 2 and choices == [(3, 3, 12, 12)]
    assert rel_err(second, first) <= 1e-6 and rel_err(second, attribute_reference(again, LAYERS, x)) <= 1e-4
    assert describe_paths(again, LAYERS, x) == describe_paths(seeded(_net), LAYERS, x)
    with torch.no_grad():
        again[2].weight.mul_(1.5)
    attribute(again, LAYERS, x, device="cpu")
    assert len(choices) == 2


def test_changed_weights_layers_shape_or_hooks_plan_again(probes):
    model, x = seeded(_net), images(3, 12, 0)
    attribute(model, LAYERS, x, device="cpu")
    with torch.no_grad():
        model[2].weight.mul_(1.5)  # in place, as an optimizer step or load_state_dict does
    after = attribute(model, LAYERS, x, device="cpu")
    assert len(probes) == 2
    assert rel_err(after, attribute_reference(model, LAYERS, x)) <= 1e-4
    model[4].bias.data.add_(0.25)  # through .data: no autograd version bump, still seen
    attribute(model, LAYERS, x, device="cpu")
    assert len(probes) == 3
    attribute(model, ["1", "3"], x, device="cpu")  # other layers
    attribute(model, LAYERS, images(2, 16, 0), device="cpu")  # other input shape
    assert len(probes) == 5
    handle = model[3].register_forward_hook(lambda m, i, o: None)  # a hook can change what is verified
    try:
        attribute(model, LAYERS, x, device="cpu")
    finally:
        handle.remove()
    assert len(probes) == 6
    attribute(model, LAYERS, x, device="cpu")  # back to a state seen before: its plan again
    assert len(probes) == 6


def test_the_cache_keeps_no_model_alive():
    clear_plan_cache()
    model = seeded(_net)
    attribute(model, LAYERS, images(2, 12, 0), device="cpu")
    assert plan_cache_info()["models"] == 1
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None and plan_cache_info()["models"] == 0


def test_fingerprint_sees_every_weight_but_not_the_device_placement():
    model = seeded(_net)
    fp = model_fingerprint(model)
    assert model_fingerprint(model) == fp
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] += 1e-3
    assert model_fingerprint(model) != fp


def test_the_first_call_reuses_the_scores_computed_while_choosing(monkeypatch):
    """Choosing the path runs the fast plan on the first batch; that batch is not computed twice,
    and the result still equals the reference (one batch or several)."""
    import ingest.cla.path_choice as path_choice

    clear_plan_cache()
    monkeypatch.setattr(path_choice, "NOISE_S", float("inf"))  # keep the fast plans whatever the timing
    calls: list[int] = []
    real = cla_attribute.fast_scores

    def counting(plan, run, a, *args, **kw):
        calls.append(a.shape[0])
        return real(plan, run, a, *args, **kw)

    monkeypatch.setattr(cla_attribute, "fast_scores", counting)
    model, x = seeded(_net), images(7, 12, 0)
    ref = attribute_reference(model, LAYERS, x)
    first = attribute(model, LAYERS, x, device="cpu", batch_size=3)
    assert calls == [3, 3, 1, 1]  # batches 2 and 3 of both pairs; batch 1 came from the choice
    assert rel_err(first, ref) <= 1e-4
    calls.clear()
    second = attribute(model, LAYERS, x, device="cpu", batch_size=3)  # the choice cached: every batch
    assert calls == [3, 3, 3, 3, 1, 1]
    assert rel_err(second, first) <= 1e-6
    calls.clear()
    clear_plan_cache()
    one = attribute(model, LAYERS, x[:3], device="cpu")  # one batch, all from the choice
    assert calls == [] and rel_err(one, attribute_reference(model, LAYERS, x[:3])) <= 1e-4
    clear_plan_cache()
