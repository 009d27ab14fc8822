"""Circuit search (docs/method.md, "Circuit search"): monotone objective, fixed point, ties, anchoring, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from catalog.errors import CircuitsError
from ingest.cla.search import (
    Circuit,
    CircuitSearchError,
    CircuitSizeError,
    circuit_objective,
    find_circuit,
)


def random_matrices(widths, seed, *, sparse=False):
    rng = np.random.default_rng(seed)
    mats = []
    for a, b in zip(widths[:-1], widths[1:]):
        m = rng.random((a, b)).astype(np.float32)
        if sparse:
            m *= rng.random((a, b)) < 0.3
        mats.append(m)
    return mats


def local_score_reference(mats, channels, i):
    """Per-neuron score of layer i given its neighbours, written as plain loops."""
    width = mats[i].shape[0] if i < len(mats) else mats[i - 1].shape[1]
    out = []
    for m in range(width):
        s = 0.0
        if i < len(mats):
            s += sum(float(mats[i][m, n]) for n in channels[i + 1])
        if i > 0:
            s += sum(float(mats[i - 1][p, m]) for p in channels[i - 1])
        out.append(s)
    return out


def objective_reference(mats, channels):
    return sum(float(mats[i][m, n]) for i in range(len(mats)) for m in channels[i] for n in channels[i + 1])


@pytest.mark.parametrize("seed", range(6))
def test_objective_never_decreases_and_is_recorded_per_sweep(seed):
    mats = random_matrices([7, 9, 6, 8], seed, sparse=seed % 2 == 1)
    c = find_circuit(mats, 3)
    assert isinstance(c, Circuit)
    assert len(c.objective_history) == c.sweeps + 1
    assert all(b >= a - 1e-12 for a, b in zip(c.objective_history, c.objective_history[1:]))
    assert c.objective_history[-1] == pytest.approx(objective_reference(mats, c.channels), rel=1e-9)
    # `objective` is the final value, a float, as the catalog stores it
    assert isinstance(c.objective, float) and c.objective == c.objective_history[-1]
    assert c.converged


@pytest.mark.parametrize("seed", range(5))
def test_result_is_a_fixed_point_by_brute_force(seed):
    widths = [6, 7, 5, 6]
    ks = [2, 3, 2, 3]
    mats = random_matrices(widths, 100 + seed, sparse=seed % 2 == 0)
    c = find_circuit(mats, ks)
    assert c.converged
    for i, (width, k) in enumerate(zip(widths, ks)):
        assert c.channels[i] == sorted(c.channels[i]) and len(c.channels[i]) == k
        score = local_score_reference(mats, c.channels, i)
        best = max(sum(score[m] for m in subset) for subset in itertools.combinations(range(width), k))
        mine = sum(score[m] for m in c.channels[i])
        assert mine == pytest.approx(best, rel=1e-9, abs=1e-12)
        # And no other whole-circuit change of this one layer gives a higher objective.
        for subset in itertools.combinations(range(width), k):
            alt = [list(ch) for ch in c.channels]
            alt[i] = list(subset)
            assert objective_reference(mats, alt) <= objective_reference(mats, c.channels) + 1e-9


def test_initial_selection_matches_hand_totals():
    mats = random_matrices([5, 6, 4], 7)
    c = find_circuit(mats, 2, max_sweeps=0)
    assert c.sweeps == 0 and not c.converged and len(c.objective_history) == 1
    totals = [
        mats[0].sum(axis=1),
        mats[0].sum(axis=0) + mats[1].sum(axis=1),
        mats[1].sum(axis=0),
    ]
    for i, t in enumerate(totals):
        expected = sorted(sorted(range(len(t)), key=lambda m: (-float(t[m]), m))[:2])
        assert c.channels[i] == expected


def test_deterministic():
    mats = random_matrices([8, 8, 8, 8, 8], 3, sparse=True)
    a = find_circuit(mats, [2, 3, 4, 3, 2])
    b = find_circuit([m.copy() for m in mats], [2, 3, 4, 3, 2])
    assert a == b


def test_planted_chain_is_recovered_exactly():
    widths = [40, 50, 30, 45]
    rng = np.random.default_rng(0)
    mats = [rng.random((a, b)).astype(np.float32) * 0.1 for a, b in zip(widths[:-1], widths[1:])]
    chain = [[3, 17, 29], [0, 11, 48], [5, 6, 21], [1, 30, 44]]
    for i, m in enumerate(mats):
        m[np.ix_(chain[i], chain[i + 1])] += 5.0
    c = find_circuit(mats, 3)
    assert c.channels == chain
    assert c.converged


def spread_decoy():
    """Layer 0 neuron 0 has the largest total (spread thinly); the chain 1→2→3 is concentrated."""
    mats = [np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32)]
    mats[0][0, :] = 0.4
    mats[0][1, 2] = 1.0
    mats[1][2, 3] = 1.0
    return mats


def test_sweeps_repair_a_misleading_initial_selection():
    c = find_circuit(spread_decoy(), 1)
    assert c.channels == [[1], [2], [3]]
    assert c.objective_history == [pytest.approx(1.4), pytest.approx(2.0), pytest.approx(2.0)]
    assert c.objective == pytest.approx(2.0)
    assert c.sweeps == 2 and c.converged


def test_ties_go_to_the_lower_channel_index():
    mats = [np.ones((5, 4), np.float32), np.ones((4, 6), np.float32)]
    c = find_circuit(mats, 2)
    assert c.channels == [[0, 1], [0, 1], [0, 1]]
    mats = [np.zeros((5, 4), np.float32)]
    mats[0][4, :] = 1.0
    mats[0][2, :] = 1.0
    c = find_circuit(mats, 1)
    assert c.channels == [[2], [0]]


def test_per_layer_k():
    mats = random_matrices([6, 7, 8], 11)
    c = find_circuit(mats, [1, 4, 2])
    assert c.k == [1, 4, 2]


def test_anchoring_holds_fixed_layers_and_their_size_defines_k():
    mats = random_matrices([6, 7, 10], 5)
    mats[1][:, 9] += 0.0  # the anchor need not be the strongest
    c = find_circuit(mats, 3, fixed={2: [9]})
    assert c.channels[2] == [9]
    # Layer 1 is then the best 3 given layer 0 and the anchor alone.
    score = local_score_reference(mats, c.channels, 1)
    best = max(sum(score[m] for m in s) for s in itertools.combinations(range(7), 3))
    assert sum(score[m] for m in c.channels[1]) == pytest.approx(best)
    assert find_circuit(mats, 3, fixed={-1: [9]}).channels == c.channels
    assert find_circuit(mats, 2, fixed={0: [5, 0]}).channels[0] == [0, 5]


def test_all_layers_fixed_converges_immediately():
    mats = random_matrices([3, 3], 1)
    c = find_circuit(mats, 1, fixed={0: [2], 1: [0]})
    assert c.channels == [[2], [0]] and c.converged and c.sweeps == 1
    assert c.objective_history == [pytest.approx(float(mats[0][2, 0]))] * 2


def test_objective_helper_matches_loops():
    mats = random_matrices([4, 5, 3], 2)
    ch = [[0, 3], [1, 2, 4], [2]]
    assert circuit_objective(mats, ch) == pytest.approx(objective_reference(mats, ch))


def test_k_larger_than_layer_names_layer_width_and_k():
    mats = random_matrices([6, 4, 6], 0)
    with pytest.raises(CircuitSizeError, match=r"k=5 .*layer 1.* 4 channels"):
        find_circuit(mats, 5)
    assert issubclass(CircuitSizeError, CircuitsError)


@pytest.mark.parametrize(
    "mats, k, kwargs, pattern",
    [
        ([], 1, {}, "at least two layers"),
        ([np.ones((3, 4)), np.ones((5, 2))], 1, {}, "do not chain"),
        ([np.ones(3)], 1, {}, "shape"),
        ([np.full((2, 2), np.nan)], 1, {}, "NaN"),
        ([np.ones((3, 4))], [1, 1, 1], {}, "3 entries"),
        ([np.ones((3, 4))], 0, {}, "at least 1"),
        ([np.ones((3, 4))], 1, {"fixed": {0: [3]}}, "0…2"),
        ([np.ones((3, 4))], 1, {"fixed": {2: [0]}}, "out of range"),
        ([np.ones((3, 4))], 1, {"fixed": {0: []}}, "no channels"),
        ([np.ones((3, 4))], 1, {"fixed": {0: [1, 1]}}, "repeats"),
        ([np.ones((3, 4))], 1, {"max_sweeps": -1}, "max_sweeps"),
    ],
)
def test_errors(mats, k, kwargs, pattern):
    with pytest.raises(CircuitSearchError, match=pattern):
        find_circuit(mats, k, **kwargs)


def test_max_sweeps_reached_is_reported_unconverged():
    c = find_circuit(spread_decoy(), 1, max_sweeps=1)
    assert c.sweeps == 1 and not c.converged
    assert c.channels == [[1], [2], [3]] and len(c.objective_history) == 2
