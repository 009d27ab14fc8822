"""`circuits overlap|shared|compose|show|list|prune-plan` through the root CLI, on a built catalog."""

from __future__ import annotations

import csv
import io
import json

import pytest
from test_queries_toy import build_toy
from typer.testing import CliRunner

from circuits.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def toy(module_db_url):
    """The toy catalog, once on DuckDB and once on PostgreSQL (`module_db_url`)."""
    return build_toy(module_db_url)


def run(toy, *args: str):
    result = runner.invoke(app, [*args, "--db", toy.path])
    return result


def test_overlap_table_json_csv_and_plot(toy, tmp_path):
    r = run(toy, "overlap", "--model", "toy")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["concept", "circuit", "cat", "fish", "star", "text", "wave"]
    star = next(line.split() for line in lines if line.startswith("star"))
    assert star[1:] == [str(toy.circuit["star"]), "0.2500", "0.0000", "1.0000", "0.0000", "0.1111"]
    assert "star has 3 circuits" in r.stdout

    r = run(toy, "overlap", "--model", "toy", "--concepts", "wave,fish", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)  # notes went to stderr: stdout is pure JSON
    assert rows[0]["concept"] == "wave" and rows[0]["fish"] == pytest.approx(3 / 7, abs=1e-4)

    png = tmp_path / "o.png"
    r = run(toy, "overlap", "--model", "toy", "--metric", "shared", "--format", "csv", "--plot", str(png))
    assert r.exit_code == 0, r.output
    table = list(csv.DictReader(io.StringIO(r.stdout)))
    assert table[0]["concept"] == "cat" and table[0]["star"] == "2"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_shared_compose_and_show(toy):
    r = run(toy, "shared", "--model", "toy", "--concepts", "star,cat", "--format", "json")
    assert r.exit_code == 0, r.output
    assert [(row["layer"], row["channel"]) for row in json.loads(r.stdout)] == [("a", 0), ("b", 1)]

    r = run(toy, "compose", "cat", "--from", "star,wave")
    assert r.exit_code == 0, r.output
    total = next(line.split() for line in r.stdout.splitlines() if line.startswith("total"))
    assert total == ["total", "5", "3", "0.6000", "2", "1"]
    assert "3 of 5 neurons covered (60.0%)" in r.stdout

    r = run(toy, "show", str(toy.circuit["star"]))
    assert r.exit_code == 0, r.output
    assert "concept star on toy" in r.stdout and "catfish:cat#seed=1" in r.stdout
    r = run(toy, "show", "star", "--model", "toy", "--format", "json")
    assert json.loads(r.stdout)["circuit"] == toy.circuit["star"]


def test_list_commands(toy):
    r = run(toy, "list", "runs", "--model", "toy", "--status", "failed", "--format", "json")
    assert r.exit_code == 0, r.output
    assert [(x["concept"], x["status"]) for x in json.loads(r.stdout)] == [("wave", "failed")]
    r = run(toy, "list", "circuits", "--concept", "star", "--format", "csv")
    assert len(list(csv.DictReader(io.StringIO(r.stdout)))) == 4
    for what, word in (("concepts", "wave"), ("models", "toy-net")):
        r = run(toy, "list", what)
        assert r.exit_code == 0 and word in r.stdout, r.output


def test_prune_plan_prints_evidence_and_ablate_commands(toy):
    r = run(toy, "prune-plan", "--model", "toy", "--against", "cat", "--keep", "fish", "--keep-budget", "100")
    assert r.exit_code == 0, r.output
    first = r.stdout.splitlines()[2].split()
    assert first[:5] == ["1", str(toy.circuit["star"]), "star", "circuit", "evidence"]
    assert "cat accuracy 0.900→0.300" in r.stdout and "proxy" in r.stdout
    assert f"circuits ablate {toy.circuit['cat']} --kind circuit --dataset catfish:cat --db {toy.path}" in r.stdout


def test_user_errors_exit_1_with_one_line(toy):
    for args in (
        ("overlap", "--model", "nomodel"),
        ("shared", "--model", "toy", "--concepts", "star,unknown"),
        ("compose", "star", "--from", "wave"),  # star has circuits on two models
        ("show", "9999"),
        ("overlap", "--model", "toy", "--plot", "/nonexistent/dir/o.png"),
    ):
        r = run(toy, *args)
        assert r.exit_code == 1, (args, r.output)
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
