"""`circuits defend typo-vit`: CLA's text circuit beside head ablation (Dyslexify) and random heads,
at matched head budgets, on held-out seeds, in one table (ingest.defence.head_compare)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from circuits.cli.main import app
from ingest import zoo
from ingest.datasets.typo_sets import require_written, typo_image_set
from ingest.defence.head_ablation import ablate_heads, rank_heads
from ingest.defence.head_compare import CLA, DYSLEXIFY, HeadRow, head_layers_of, verdicts
from ingest.defence.target import CONCEPT_SEED_OFFSET

runner = CliRunner()
KEEP = "stripes_checker,stripes_dots"


def _args(db, *extra: str, n_text: int = 4, n_attack: int = 6, seeds: str = "21") -> list[str]:
    return [
        "defend",
        "typo-vit",
        "--n-text",
        str(n_text),
        "--n-attack",
        str(n_attack),
        "--n-clean",
        "1",
        "--keep",
        KEEP,
        "--holdout-seeds",
        seeds,
        "--device",
        "cpu",
        "--threads",
        "1",
        "--db",
        str(db),
        *extra,
    ]


def test_head_layers_of_typo_vit_and_none_for_typo_mini():
    assert len(head_layers_of("typo-vit", None)) == 6
    assert head_layers_of("typo-mini", None) == []


def test_defend_typo_vit_one_table_both_methods_matched_budgets(tmp_path):
    db = tmp_path / "c.duckdb"
    r = runner.invoke(app, _args(db, "--k", "1", "--baselines", "1", "--format", "json"))
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    methods = [(row["method"], row["ablation"], row["heads_removed"]) for row in rows]
    assert methods == [
        ("none", "-", 0),
        (CLA, "zero", 6),
        (DYSLEXIFY, "zero", 6),
        ("random heads (1 draws)", "zero", 6),
        (CLA, "mean", 6),
        (DYSLEXIFY, "mean", 6),
        ("random heads (1 draws)", "mean", 6),
    ]
    # CLA: one head per head layer (k = 1); Dyslexify: the six heads the word changes most.
    cla = rows[1]["heads"].split()
    assert sorted(int(h.split(".")[0]) for h in cla) == list(range(6))
    loaded = zoo.load_model("typo-vit", layers=head_layers_of("typo-vit", None))
    layers = list(loaded.layers)
    cseed = 1 + CONCEPT_SEED_OFFSET
    x_text = zoo.preprocess(loaded.spec, list(typo_image_set("typo:attack", 4, seed=cseed).images))
    x_plain = zoo.preprocess(loaded.spec, list(typo_image_set("typo:clean", 4, seed=cseed).images))
    top = [f"{layers.index(name)}.{h}" for (name, h), _ in rank_heads(loaded.module, layers, x_text, x_plain)[:6]]
    assert rows[2]["heads"].split() == top
    # the unablated row and the Dyslexify zero row, recomputed here on seed 21's images
    attack = typo_image_set("typo:attack", 6, seed=21)
    xa = zoo.preprocess(loaded.spec, list(attack.images))
    with torch.no_grad():
        base = loaded.module(xa).argmax(1).numpy()
        heads = [(layers[int(t.split(".")[0])], int(t.split(".")[1])) for t in top]
        with ablate_heads(loaded.module, heads):
            cut = loaded.module(xa).argmax(1).numpy()
    written = require_written(attack)
    assert rows[0]["attack_success"] == pytest.approx(float(np.mean(base == written)), abs=1e-4)
    assert rows[2]["attack_success"] == pytest.approx(float(np.mean(cut == written)), abs=1e-4)
    for row in rows:
        assert 0 <= row["attack_success"] <= 1 and 0 <= row["clean_accuracy"] <= 1
    # the CLA run is stored: the contrast run over the six head layers
    out = runner.invoke(app, ["sql", "select count(*) as n from run", "--db", str(db), "--format", "json"])
    assert out.exit_code == 0 and json.loads(out.output)[0]["n"] == 1
    # the table says on which images and who wins where (the stored run is reused)
    r = runner.invoke(app, _args(db, "--k", "1", "--baselines", "1"))
    assert r.exit_code == 0, r.output
    assert "held-out seeds 21 (6 attack + 2 clean images each)" in r.output
    assert r.output.count("6 heads, ") == 2 and "lower attack success:" in r.output


def test_defend_typo_vit_bad_k_and_plot_write_nothing(tmp_path):
    db = tmp_path / "c.duckdb"
    r = runner.invoke(app, _args(db, "--k", "1,2"))
    assert r.exit_code == 1 and r.output.count("error:") == 1 and "head layer (6)" in r.output
    assert not db.exists()
    r = runner.invoke(app, _args(db, "--plot", str(tmp_path / "p.png")))
    assert r.exit_code == 1 and "--plot" in r.output
    assert not db.exists()
    r = runner.invoke(app, _args(db, "--search"))
    assert r.exit_code == 1 and r.output.count("error:") == 1 and "--search" in r.output
    assert not db.exists()


def test_verdicts_name_the_winner_per_budget():
    rows = [
        HeadRow("none", "-", 0, 0.2, 0, 0.5, 0),
        HeadRow(CLA, "zero", 6, 0.05, 0, 0.45, 0),
        HeadRow(DYSLEXIFY, "zero", 6, 0.10, 0, 0.40, 0),
        HeadRow("random heads (5 draws)", "zero", 6, 0.15, 0.02, 0.44, 0),
        HeadRow(CLA, "mean", 6, 0.10, 0, 0.40, 0),
        HeadRow(DYSLEXIFY, "mean", 6, 0.05, 0, 0.45, 0),
        HeadRow("random heads (5 draws)", "mean", 6, 0.08, 0.01, 0.44, 0),
    ]
    zero, mean = verdicts(rows)
    assert zero.startswith("6 heads, zero") and "-> CLA wins" in zero and "CLA, head ablation" in zero
    assert "-> head ablation wins" in mean and "(0.070): head ablation" in mean


@pytest.mark.slow
def test_defend_typo_vit_two_budgets_three_seeds(tmp_path):
    r = runner.invoke(
        app,
        _args(
            tmp_path / "c.duckdb",
            "--k",
            "1",
            "--k",
            "2",
            "--baselines",
            "2",
            "--format",
            "json",
            n_text=24,
            n_attack=24,
            seeds="21,31,41",
        ),
    )
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["heads_removed"] for row in rows] == [0] + [6] * 6 + [12] * 6
    cla6, cla12 = rows[1]["heads"].split(), rows[7]["heads"].split()
    assert len(set(cla12)) == 12 and len(set(cla6)) == 6
    dys6, dys12 = rows[2]["heads"].split(), rows[8]["heads"].split()
    assert dys12[:6] == dys6  # the same ranking, cut deeper
