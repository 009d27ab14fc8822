"""Careless-use behaviours: reuse under a new concept name records it; refine is idempotent;
CIRCUIT/RUN arguments take ids or concept names."""

from __future__ import annotations

import bad_input_cases as bic
import pytest
from _helpers_cli import noise_images, sql_rows, tiny_ingest_args
from typer.testing import CliRunner

from circuits.cli.main import app

runner = CliRunner()


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    (tmp_path / "tiny.py").write_text(bic.TINY_MODEL)
    noise_images(tmp_path / "imgs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _ingest(concept, *extra):
    return runner.invoke(app, tiny_ingest_args("tiny.py:build", concept, "imgs", "c.duckdb", *extra))


def _sql(query):
    return sql_rows("c.duckdb", query)


def test_same_images_under_a_new_name_record_the_new_concept(tiny):
    assert _ingest("noise").exit_code == 0
    r = _ingest("static")
    assert r.exit_code == 0 and "reused run" in r.stdout, r.output
    runs = _sql(
        "select r.id, co.name as concept, r.status from run r join concept co on co.id = r.concept_id order by r.id"
    )
    assert [x["concept"] for x in runs] == ["noise", "static"] and {x["status"] for x in runs} == {"complete"}
    scores = _sql("select run_id, sum(n_src * n_dst) as n from run_matrix group by 1 order by 1")
    assert [e["n"] for e in scores] == [6 * 8 + 8 * 5] * 2  # the copy holds every score
    edges = _sql("select run_id, count(*) as n from edge group by 1 order by 1")
    assert len(edges) == 2 and edges[0]["n"] == edges[1]["n"] > 0  # and the same top edges
    same = _sql(
        "select count(*) as n from (select src_neuron_id, dst_neuron_id, score from edge where run_id = "
        f"{runs[0]['id']} except select src_neuron_id, dst_neuron_id, score from edge where run_id = {runs[1]['id']})"
    )
    assert same[0]["n"] == 0
    shown = runner.invoke(app, ["show", "static", "--db", "c.duckdb"])
    assert shown.exit_code == 0 and "static" in shown.stdout, shown.output
    patches = _sql("select run_id, count(*) as n from neuron_patch group by 1 order by 1")
    assert len(patches) == 2 and patches[0]["n"] == patches[1]["n"] > 0  # the web view has patches for both
    views = _sql("select distinct concept from circuit_neurons_v order by 1")
    assert [v["concept"] for v in views] == ["noise", "static"]
    again = _ingest("static")  # third time: the concept's own run, no second copy
    assert again.exit_code == 0
    assert _sql("select count(*) as n from run")[0]["n"] == 2


def test_refine_is_idempotent_and_takes_a_concept(tiny):
    assert _ingest("noise").exit_code == 0
    first = runner.invoke(app, ["refine", "noise", "--k", "3", "--db", "c.duckdb"])
    assert first.exit_code == 0 and "stored circuit" in first.stdout, first.output
    second = runner.invoke(app, ["refine", "noise", "--k", "3", "--db", "c.duckdb"])
    assert second.exit_code == 0 and "nothing new stored" in second.stdout, second.output
    assert _sql("select count(*) as n from circuit")[0]["n"] == 2  # k=2 from ingest, k=3 once


def test_ablate_takes_a_concept_name(tiny):
    assert _ingest("noise").exit_code == 0
    r = runner.invoke(app, ["ablate", "noise", "--model", "tiny.py:build", "--images", "imgs", "--db", "c.duckdb"])
    assert r.exit_code == 0, r.output
    assert _sql("select count(*) as n from intervention")[0]["n"] == 1
