"""queries.claims: the CatFish claims read from stored circuits and evaluations (no torch)."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers_catalog import write_circuit, write_run

from catalog import store
from catalog.errors import NotFound
from catalog.store import EvaluationRow
from queries.claims import (
    catfish_claims,
    causality_claim,
    composition_claim,
    jaccard,
    report_markdown,
    reuse_claim,
)


@pytest.fixture
def cat(any_cat):
    """Every test here runs on DuckDB and on PostgreSQL (see conftest `any_cat`)."""
    return any_cat


LAYERS = [("l0", 8), ("l1", 8)]
PARTS = {"c_ab": ("a", "b"), "c_bc": ("b", "c"), "c_ca": ("c", "a"), "c_ad": ("a", "d")}
# concept → channels per layer: a class circuit is made of its primitives' channels
CHANNELS = {
    "a": [[0, 1], [0, 1]],
    "b": [[2, 3], [2, 3]],
    "c": [[4, 5], [4, 5]],
    "d": [[6, 7], [6, 7]],
    "c_ab": [[0, 2], [1, 3]],
    "c_bc": [[2, 4], [3, 5]],
    "c_ca": [[4, 0], [5, 1]],
    "c_ad": [[0, 6], [1, 7]],
}


def _store_demo(cat):
    """Circuits for every concept; for each (primitive, class) an intervention whose accuracy drop
    is 0.6 when the class contains the primitive, else 0.05 (random: 0.1)."""
    rng = np.random.default_rng(0)
    circuits, interventions, drops = {}, {}, {}
    with cat.session() as s, s.begin():
        model = store.ensure_model(s, name="toy", architecture="cnn", weights_sha256="a" * 64, layers=LAYERS)
        for i, (name, channels) in enumerate(CHANNELS.items()):
            key = f"{i:x}" * 64
            matrices = [rng.random((8, 8), dtype=np.float32)]
            run = write_run(s, model, store.ensure_concept(s, name), matrices, key, image_set_sha256=key, n_images=1)
            circuits[name] = write_circuit(s, run, channels)
        for p in "abcd":
            for c, pair in PARTS.items():
                drop = 0.6 if p in pair else 0.05
                interventions[(p, c)] = store.write_intervention(
                    s,
                    circuit_id=circuits[p],
                    kind="circuit",
                    params={"baseline_seed": 0},
                    edge_fraction=0.1,
                    baseline_edge_fraction=0.1,
                    evaluations=[
                        EvaluationRow(f"catfish:{c}", "e" * 64, 4, "accuracy", 0.9, 0.9 - drop, 0.8),
                        EvaluationRow(f"catfish:{c}", "e" * 64, 4, "kl", 0.0, 1.0, 0.5),
                    ],
                )
                drops[(p, c)] = (0.9 - (0.9 - drop), 0.9 - 0.8)
    return circuits, interventions, drops


def _neurons(channels):
    return {(i, c) for i, layer in enumerate(channels) for c in layer}


def test_claims_from_the_catalog_equal_the_claims_on_the_same_figures(cat):
    circuits, interventions, drops = _store_demo(cat)
    with cat.session() as s:
        report = catfish_claims(s, PARTS, circuits, interventions)
    neurons = {name: _neurons(ch) for name, ch in CHANNELS.items()}
    assert report.neurons == neurons
    assert report.drops.keys() == drops.keys()
    assert all(report.drops[k] == pytest.approx(drops[k]) for k in drops)
    expected = (composition_claim(PARTS, neurons), reuse_claim(PARTS, neurons), causality_claim(PARTS, drops))
    assert [c.name for c in report.claims] == ["composition", "reuse", "causality"]
    assert [c.holds for c in report.claims] == [c.holds for c in expected] == [True, True, True]
    assert report.claims[0].figures == expected[0].figures and report.claims[1] == expected[1]
    assert report.claims[2].figures == pytest.approx(expected[2].figures)
    overlap = report.overlap(["a", "c_ab"])
    assert overlap.shape == (2, 2) and overlap[0, 1] == pytest.approx(jaccard(neurons["a"], neurons["c_ab"]))
    text = report_markdown(report, catalog="x.duckdb", seconds=3.0, settings="k = 2.")
    assert "Catalog: `x.duckdb`. k = 2. Finished in 3 s." in text
    for claim in ("composition", "reuse", "causality"):
        assert f"| {claim} | yes |" in text
    assert "| a | **60** (10) | 5 (10) | **60** (10) | **60** (10) |" in text


def test_a_claim_that_does_not_hold_is_reported():
    neurons = {name: _neurons(ch) for name, ch in CHANNELS.items()}
    flat = {(p, c): (0.1, 0.1) for p in "abcd" for c in PARTS}
    assert not causality_claim(PARTS, flat).holds
    shuffled = {**neurons, "c_ab": neurons["c_bc"]}
    assert not composition_claim(PARTS, shuffled).holds


def test_missing_evaluations_name_the_next_step(cat):
    circuits, interventions, _ = _store_demo(cat)
    with cat.session() as s:
        with pytest.raises(NotFound, match="circuits demo"):
            catfish_claims(s, PARTS, circuits, {**interventions, ("a", "c_ab"): 9999})
        with pytest.raises(NotFound, match="no circuit 9999"):
            catfish_claims(s, PARTS, {**circuits, "a": 9999}, interventions)
