"""Prune plans respect --keep: a plan that costs a kept concept more than the keep budget beyond its
random baseline is never ranked, and when none meets the budget the plan says so in one line.

The catalog holds the case found on catfish-mini: pruning rings' circuit takes
stripes_star accuracy 1.000 → 0.000 and star_hatch 0.984 → 0.000, yet it ranked first."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from catalog import store
from catalog.engine import close_catalogs_of, open_catalog
from catalog.errors import NotFound
from circuits.cli.main import app
from queries.prune_plan import plan_pruning
from tests.test_queries_toy import LAYERS, _circuit, _matrices, _run

runner = CliRunner()
CHANNELS = {"stripes_star": [[0], [0], [0]], "star_hatch": [[1], [1], [1]], "rings": [[2], [2], [2]]}
CHANNELS["waves"] = [[3], [3], [2]]
CHANNELS["dots"] = [[0, 3], [4], [1]]


def _eval(concept: str, clean: float, after: float, baseline: float):
    return store.EvaluationRow(f"catfish:{concept}#seed=0", "f" * 64, 8, "accuracy", clean, after, baseline)


def _intervene(s, circuit_id: int, evaluations) -> None:
    for ev in evaluations:  # ablate stores one intervention per image set
        store.write_intervention(
            s,
            circuit_id=circuit_id,
            kind="circuit",
            params={"pair": 0},
            edge_fraction=0.05,
            baseline_edge_fraction=0.05,
            evaluations=[ev],
        )


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("budget") / "c.duckdb")
    cat = open_catalog(path, create=True)
    with cat.session() as s, s.begin():
        model = store.ensure_model(s, name="catfish-mini", architecture="toy", weights_sha256="a" * 64, layers=LAYERS)
        ids = {}
        for seed, (name, chans) in enumerate(CHANNELS.items()):
            ids[name] = _circuit(s, _run(s, model, store.ensure_concept(s, name), _matrices(seed), name), chans)
        store.ensure_concept(s, "no_circuit_yet")
        # rings: the figures of that case; waves: spares star_hatch only partly; dots: hurts stripes less.
        _intervene(s, ids["rings"], [_eval("stripes_star", 1.0, 0.0, 0.97), _eval("star_hatch", 0.984, 0.0, 0.96)])
        _intervene(s, ids["waves"], [_eval("stripes_star", 1.0, 0.5, 0.97), _eval("star_hatch", 0.984, 0.90, 0.95)])
        _intervene(s, ids["dots"], [_eval("stripes_star", 1.0, 0.9, 0.98), _eval("star_hatch", 0.984, 0.97, 0.98)])
    cat.close()
    yield {"path": path, "ids": ids}
    close_catalogs_of(path)


def test_over_budget_plans_are_never_recommended(db):
    with open_catalog(db["path"], read_only=True).session() as s:
        plan = plan_pruning(s, "catfish-mini", "stripes_star", ["star_hatch"])
        free = plan_pruning(s, "catfish-mini", "stripes_star", ["star_hatch"], keep_budget=None)
    ids = db["ids"]
    # Without a budget, by score: waves 0.5 − 0.084, dots 0.1 − 0.014, rings 1.0 − 0.984.
    assert [c.circuit_id for c in free.candidates[:3]] == [ids["waves"], ids["dots"], ids["rings"]]
    # With the default budget (2 points beyond random) only dots spares star_hatch (0.98 − 0.97 = 0.01).
    assert [c.circuit_id for c in plan.recommended] == [ids["dots"]]
    over = [c for c in plan.candidates if c.basis == "over-budget"]
    assert [c.circuit_id for c in over] == [ids["waves"], ids["rings"]]  # closest to the budget first
    assert over[0].keep_damage == pytest.approx(0.05) and over[1].keep_damage == pytest.approx(0.96)
    assert plan.candidates[-2:] == tuple(over)
    rows = {r["circuit"]: r for r in plan.rows()}
    assert rows[ids["dots"]]["rank"] == 1 and rows[ids["rings"]]["rank"] is None
    assert plan.verdict is None


def test_the_catfish_case_says_no_circuit_separates_them(db):
    r = runner.invoke(
        app,
        ["prune-plan", "--model", "catfish-mini", "--against", "stripes_star", "--keep", "star_hatch"]
        + ["--keep-budget", "0.5", "--db", db["path"]],
    )
    assert r.exit_code == 0, r.output
    first = r.stdout.splitlines()[0]
    assert first.startswith("no stored circuit suppresses stripes_star while keeping star_hatch within the keep budget")
    ids = db["ids"]
    assert f"closest, by damage: circuit {ids['dots']} (dots) 0.010, circuit {ids['waves']} (waves) 0.050" in first
    assert f"circuit {ids['rings']} (rings) 0.960" in first
    table = r.stdout.split("\n", 1)[1]
    assert "over-budget" in table and "0.96" in table  # the damage is shown beside each candidate

    r = runner.invoke(
        app,
        ["prune-plan", "--model", "catfish-mini", "--against", "stripes_star", "--keep", "star_hatch"]
        + ["--keep-budget", "100", "--db", db["path"]],
    )
    assert r.exit_code == 0 and not r.stdout.startswith("no stored circuit"), r.output


@pytest.mark.parametrize(
    "keep, message",
    [
        (
            "no_circuit_yet",
            "--keep no_circuit_yet: no stored circuit of catfish-mini for that concept and no evaluation",
        ),
        ("nothing_like_it", "nothing_like_it is neither a concept in the catalog"),
    ],
)
def test_keep_without_a_circuit_is_one_error_line(db, keep, message):
    r = runner.invoke(
        app, ["prune-plan", "--model", "catfish-mini", "--against", "rings", "--keep", keep, "--db", db["path"]]
    )
    assert r.exit_code == 1 and message in r.output and r.output.count("error:") == 1, r.output
    with open_catalog(db["path"], read_only=True).session() as s, pytest.raises(NotFound):
        plan_pruning(s, "catfish-mini", "rings", [keep])
