"""`circuits overlap` stays bounded: a top-N of concepts by default, a refused all-pairs matrix above
`MAX_OVERLAP_CIRCUITS` unless forced (one line naming --force), and Jaccard counts from the pairs of
circuits sharing a neuron (no dense circuits × neurons matrix), checked against plain sets."""

from __future__ import annotations

import numpy as np
import pytest
from test_queries_toy import build_toy
from typer.testing import CliRunner

import queries.overlap as overlap
from catalog.engine import close_catalogs_of, open_catalog
from catalog.errors import CircuitsError
from circuits.cli.main import app
from queries.overlap import jaccard_matrix, overlap_matrix

runner = CliRunner()
NAMES = ["cat", "fish", "star", "text", "wave"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("overlap") / "toy.duckdb")
    out = build_toy(path)
    yield out
    close_catalogs_of(path)


def test_jaccard_counts_match_plain_sets_with_empty_and_shared_sets():
    rng = np.random.default_rng(3)
    n, universe = 15, 40
    sets = [set(rng.choice(universe, size=int(rng.integers(0, 25)), replace=False).tolist()) for _ in range(n)]
    sets[4] = set()
    index = np.array([i for i, s in enumerate(sets) for _ in s], dtype=np.int64)
    items = np.array([x * 1_000_003 for s in sets for x in s], dtype=np.int64)  # large, sparse ids
    shared, jac = jaccard_matrix(index, items, n)
    for a in range(n):
        for b in range(n):
            assert shared[a, b] == len(sets[a] & sets[b])
            union = len(sets[a] | sets[b])
            assert np.isnan(jac[a, b]) if union == 0 else jac[a, b] == pytest.approx(len(sets[a] & sets[b]) / union)


def test_default_is_the_top_concepts_with_the_newest_circuits(toy):
    with open_catalog(toy.path, read_only=True).session() as s:
        everything = overlap_matrix(s, "toy", top=None)
        newest = sorted(NAMES, key=lambda c: toy.circuit[c], reverse=True)[:2]
        two = overlap_matrix(s, "toy", top=2)
        assert two.labels == tuple(sorted(newest)) and everything.labels == tuple(NAMES)
        assert two.notes[0] == (
            "the 2 concepts with the newest circuits of 5 on toy: `concepts=` names others, `top=` N shows more"
        )
        at = {c: i for i, c in enumerate(NAMES)}
        sub = everything.values[np.ix_([at[c] for c in two.labels], [at[c] for c in two.labels])]
        assert np.array_equal(two.values, sub)
        assert overlap_matrix(s, "toy", ["wave", "cat"], top=1).labels == ("wave", "cat")  # named: all of them
        with pytest.raises(CircuitsError, match="`top=` must be at least 1"):
            overlap_matrix(s, "toy", top=0)


def test_a_matrix_above_the_limit_is_refused_unless_forced(toy, monkeypatch):
    monkeypatch.setattr(overlap, "MAX_OVERLAP_CIRCUITS", 3)
    with open_catalog(toy.path, read_only=True).session() as s:
        with pytest.raises(CircuitsError, match="5 concepts \\(25 cells\\) is above the 3 computed without `force=`"):
            overlap_matrix(s, "toy", metric="weighted")
        assert overlap_matrix(s, "toy", metric="weighted", force=True).values.shape == (5, 5)
        assert overlap_matrix(s, "toy", top=3).values.shape == (3, 3)
    result = runner.invoke(app, ["overlap", "--model", "toy", "--db", toy.path])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "pass --force" in result.stderr
    forced = runner.invoke(app, ["overlap", "--model", "toy", "--force", "--db", toy.path, "-f", "json"])
    assert forced.exit_code == 0, forced.output
    top = runner.invoke(app, ["overlap", "--model", "toy", "--top", "2", "--db", toy.path])
    assert top.exit_code == 0 and "note: the 2 concepts with the newest circuits of 5 on toy" in top.stdout


def test_cli_help_states_the_limit():
    assert f"{overlap.MAX_OVERLAP_CIRCUITS:,}" in runner.invoke(app, ["overlap", "--help"]).stdout.replace("\n", " ")


def test_a_large_matrix_gets_a_progress_line(toy, monkeypatch):
    monkeypatch.setattr(overlap, "PROGRESS_FROM", 5)
    said: list[str] = []
    with open_catalog(toy.path, read_only=True).session() as s:
        overlap_matrix(s, "toy", top=4, progress=said.append)
        assert said == []
        overlap_matrix(s, "toy", metric="weighted", progress=said.append)
    assert said == ["computing the weighted overlap of 5 concepts' circuits (25 cells)…"]
    result = runner.invoke(app, ["overlap", "--model", "toy", "-f", "json", "--db", toy.path])
    assert result.exit_code == 0 and "computing the jaccard overlap of 5 concepts" in result.stderr
    assert result.stdout.lstrip().startswith("[")  # stdout stays parseable
