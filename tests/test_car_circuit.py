"""bench/car_circuit.py on a planted stand-in ONLY (no real InceptionV1 weights here): a random-init
InceptionV1 with the car path mixed4b:237/373 -> mixed4c:447 written into its weights is found and
reported; the same network without the plant is not reported as containing it."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("car_circuit", ROOT / "bench" / "car_circuit.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["car_circuit"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_planted_car_circuit_is_found_and_an_unplanted_one_is_not(harness, tmp_path):
    planted = tmp_path / "planted.pt"
    harness.planted_inputs(tmp_path / "cars", n=2, weights=planted)
    run = functools.partial(
        harness.run, images=str(tmp_path / "cars"), layers=("mixed4b", "mixed4c"), k=4, input_size=64, threads=1
    )
    report = run(str(planted), db=str(tmp_path / "c.duckdb"))
    assert report.known_in_circuit == {"mixed4c:447": True, "mixed4b:237": True, "mixed4b:373": True}
    assert report.car_rank == 1 and report.car_width == 512
    assert sorted(report.part_ranks.values()) == [1, 2]
    assert {c for c, _ in report.top_into_car[:2]} == {237, 373}
    text = report.to_text()
    assert "overlap with the known car circuit: 3 of 3 neurons" in text and "rank by CLA total: 1 of 512" in text

    from ingest.zoo.inceptionv1 import build_inceptionv1

    torch.manual_seed(0)
    plain = tmp_path / "plain.pt"
    torch.save(build_inceptionv1().state_dict(), plain)
    control = run(str(plain), db=str(tmp_path / "c2.duckdb"))
    assert sum(control.known_in_circuit.values()) < 3 and control.car_rank > 1
