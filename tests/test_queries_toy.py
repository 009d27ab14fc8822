"""A small catalog with known answers for the query tests (a helper module: it holds no tests).

Model "toy": layers a (4 channels), b (5), c (3). Circuits (channels per layer a | b | c):

    star   a{0,1} b{0,1} c{0}     (newest of star's newest run; older ones exist)
    wave   a{1,2} b{2,3} c{1}
    cat    a{0,3} b{1,2} c{2}     (the class circuit)
    fish   a{2,3} b{3,4} c{1}
    text   a{3}   b{4}   c{2}

Hand-computed: Jaccard(star, wave) = 1/9, (star, cat) = 2/8, (wave, fish) = 3/7, (star, fish) = 0;
shared(star, cat) = {a:0, b:1}; compose(cat from star, wave) covers a 1/2, b 2/2, c 0/1, total 3/5.
A second model "other" has one circuit for "star", so a bare concept name is ambiguous.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np
from _helpers_catalog import write_circuit, write_run

from catalog import store
from catalog.engine import open_catalog

LAYERS = [("a", 4), ("b", 5), ("c", 3)]
CIRCUITS = {
    "star": [[0, 1], [0, 1], [0]],
    "wave": [[1, 2], [2, 3], [1]],
    "cat": [[0, 3], [1, 2], [2]],
    "fish": [[2, 3], [3, 4], [1]],
    "text": [[3], [4], [2]],
}


@dataclass
class Toy:
    """What the tests need to know about the built catalog."""

    path: str
    circuit: dict[str, int]  # concept → the circuit queries must choose
    run: dict[str, int]
    matrices: dict[str, list[np.ndarray]]  # concept → S_0, S_1 of its chosen run
    older: list[int]  # circuits that must not be chosen
    other_model_circuit: int


def _matrices(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    widths = [w for _, w in LAYERS]
    # Distinct positive scores, rounded to float32 so the test's arithmetic sees the stored values.
    return [rng.uniform(0.1, 2.0, size=(widths[i], widths[i + 1])).astype(np.float32) for i in range(2)]


def _run(s, model, concept_id: int, matrices: list[np.ndarray], key: str) -> int:
    sha = hashlib.sha256(key.encode()).hexdigest()
    return write_run(
        s,
        model,
        concept_id,
        matrices,
        key,
        image_set_sha256=sha,
        n_images=4,
        params={"method": "test"},
        library_versions={"numpy": "x"},
    )


def _circuit(s, run_id: int, channels: list[list[int]]) -> int:
    return write_circuit(s, run_id, channels, sweeps=2, history=[1.0, 2.0])


def _evaluation(image_set: str, metric: str, clean: float, value: float, baseline: float, sha: str = "f" * 64):
    return store.EvaluationRow(image_set, sha, 8, metric, clean, value, baseline)


def build_toy(path: str) -> Toy:
    """Create and fill the catalog file at `path` (migrated by `open_catalog(create=True)`)."""
    cat = open_catalog(path, create=True)
    circuit, run, matrices, older = {}, {}, {}, []
    with cat.session() as s, s.begin():
        model = store.ensure_model(s, name="toy", architecture="toy-net", weights_sha256="a" * 64, layers=LAYERS)
        other = store.ensure_model(s, name="other", architecture="toy-net", weights_sha256="b" * 64, layers=LAYERS)
        ids = {name: store.ensure_concept(s, name) for name in CIRCUITS}
        store.write_example_images(s, ids["cat"], "c" * 64, [("1" * 64, "/data/kitties/1.png")])
        # star: an older run with a circuit, then the newest run with two circuits (the last wins).
        old_run = _run(s, model, ids["star"], _matrices(99), "old-star-1")
        older.append(_circuit(s, old_run, [[2], [2], [2]]))
        for seed, name in enumerate(CIRCUITS):
            mats = _matrices(seed)
            run[name] = _run(s, model, ids[name], mats, f"run-{name}-2")
            matrices[name] = mats
            if name == "star":
                older.append(_circuit(s, run[name], [[3], [3], [1]]))
            circuit[name] = _circuit(s, run[name], CIRCUITS[name])
        other_run = _run(s, other, ids["star"], _matrices(7), "other-star-3")
        other_circuit = _circuit(s, other_run, CIRCUITS["star"])
        store.record_failed_run(
            s,
            model=model,
            concept_id=ids["wave"],
            layer_names=["a", "b", "c"],
            params={},
            image_set_sha256="e" * 64,
            n_images=1,
            provenance_key="failed-4",
            library_versions={},
            device="cpu",
            started_at=dt.datetime(2025, 1, 2),
            seconds=None,
            error="boom",
        )
        # Evidence for prune plans: pruning star hurts cat much more than fish; wave the reverse.
        # ablate stores one intervention per image set, so each circuit has two.
        for name, cat_after, fish_after, frac in (("star", 0.3, 0.85, 0.05), ("wave", 0.6, 0.4, 0.04)):
            store.write_intervention(
                s,
                circuit_id=circuit[name],
                kind="circuit",
                params={"pair": 0},
                edge_fraction=frac,
                baseline_edge_fraction=frac,
                evaluations=[
                    _evaluation("catfish:cat#seed=1", "accuracy", 0.9, cat_after, 0.88),
                    _evaluation("catfish:cat#seed=1", "kl", 0.0, 1.5, 0.1),
                ],
            )
            store.write_intervention(
                s,
                circuit_id=circuit[name],
                kind="circuit",
                params={"pair": 0},
                edge_fraction=frac,
                baseline_edge_fraction=frac,
                evaluations=[_evaluation("catfish:fish#seed=1", "accuracy", 0.9, fish_after, 0.9)],
            )
        # text: evaluated on an attack set (attack success falls) and on cat images found by sha256.
        store.write_intervention(
            s,
            circuit_id=circuit["text"],
            kind="circuit",
            params={},
            edge_fraction=0.01,
            baseline_edge_fraction=0.01,
            evaluations=[
                _evaluation("catfish:attack#seed=0", "attack_success", 0.8, 0.1, 0.75),
                _evaluation("catfish:attack#seed=0", "accuracy", 0.2, 0.7, 0.25),
                _evaluation("dir:/data/kitties", "accuracy", 0.9, 0.88, 0.9, sha="c" * 64),
            ],
        )
    cat.close()
    return Toy(path, circuit, run, matrices, older, other_circuit)


def channels_of(name: str) -> list[list[int]]:
    """The chosen circuit's channels per layer."""
    return CIRCUITS[name]


def neuron_set(name: str) -> set[tuple[str, int]]:
    """The chosen circuit's neurons as (layer, channel)."""
    return {(LAYERS[i][0], ch) for i, chans in enumerate(CIRCUITS[name]) for ch in chans}


def internal_weights(toy: Toy, name: str) -> dict[tuple[tuple[str, int], tuple[str, int]], float]:
    """Reference: the circuit's internal edges → score, straight from the matrices (no catalog)."""
    out = {}
    chans = CIRCUITS[name]
    for i, mat in enumerate(toy.matrices[name]):
        for m in chans[i]:
            for n in chans[i + 1]:
                out[((LAYERS[i][0], m), (LAYERS[i + 1][0], n))] = float(mat[m, n])
    return out
