"""The ingest pipeline end to end through the CLI, on a tiny user model and real DuckDB files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers_cli import catfish_ingest_args, noise_images, tiny_ingest_args
from _helpers_cli import sql_rows as _sql
from tiny_model import TINY_MODEL
from typer.testing import CliRunner

from circuits.cli.main import app

LAYERS = "1,3,5"  # the three ReLU outputs: widths 6, 8, 5
runner = CliRunner()


@pytest.fixture()
def setup(tmp_path):
    model = tmp_path / "tiny.py"
    model.write_text(TINY_MODEL)
    images = noise_images(tmp_path / "imgs")
    return {"model": f"{model}:build", "images": str(images), "db": str(tmp_path / "c.duckdb"), "tmp": tmp_path}


def _ingest(setup, *extra):
    return runner.invoke(app, tiny_ingest_args(setup["model"], "noise", setup["images"], setup["db"], *extra))


def test_ingest_stores_run_edges_and_circuit(setup):
    r = _ingest(setup)
    assert r.exit_code == 0, r.output
    assert "stored run" in r.output
    runs = _sql(setup["db"], "select id, status, n_images from run")
    assert runs == [{"id": runs[0]["id"], "status": "complete", "n_images": 4}]
    edges = _sql(setup["db"], "select coalesce(sum(n_src * n_dst), 0) as n from run_matrix")  # every score stored
    assert edges[0]["n"] == 6 * 8 + 8 * 5
    neurons = _sql(setup["db"], "select count(*) as n from circuit_neurons_v")
    assert neurons[0]["n"] == 6


def test_same_inputs_are_reused_unless_forced(setup):
    assert _ingest(setup).exit_code == 0
    r = _ingest(setup)
    assert r.exit_code == 0 and "reused run" in r.output, r.output
    assert _sql(setup["db"], "select count(*) as n from run")[0]["n"] == 1
    assert _sql(setup["db"], "select count(*) as n from circuit")[0]["n"] == 1  # same k: same circuit
    r = _ingest(setup, "--k", "3")
    assert r.exit_code == 0 and "reused run" in r.output
    assert _sql(setup["db"], "select count(*) as n from circuit")[0]["n"] == 2  # new k: new circuit, no CLA
    r = _ingest(setup, "--force")
    assert r.exit_code == 0 and "stored run" in r.output
    assert _sql(setup["db"], "select count(*) as n from run")[0]["n"] == 2


def test_refine_makes_a_circuit_from_stored_edges(setup):
    assert _ingest(setup).exit_code == 0
    run_id = _sql(setup["db"], "select id from run")[0]["id"]
    r = runner.invoke(app, ["refine", str(run_id), "--k", "3", "--db", setup["db"]])
    assert r.exit_code == 0, r.output
    sizes = _sql(setup["db"], "select circuit_id, count(*) as n from circuit_neurons_v group by 1 order by 1")
    assert [s["n"] for s in sizes] == [6, 9]


def test_corrupt_png_is_skipped_by_name(setup):
    Path(setup["images"], "zz_broken.png").write_bytes(b"\x89PNG broken")
    r = _ingest(setup)
    assert r.exit_code == 0, r.output
    assert "zz_broken.png" in r.output and "1 unreadable" in r.output


@pytest.mark.parametrize(
    "case, args, expect",
    [
        ("missing folder", ["--images", "/nonexistent/folder"], "does not exist"),
        ("unknown layer", ["--layers", "1,nope"], "nope"),
        ("k too large", ["--k", "7"], "larger than layer"),
        ("unknown model", ["--model", "no-such-model"], "no-such-model"),
    ],
)
def test_bad_inputs_give_one_line_errors(setup, case, args, expect):
    base = {"--images": setup["images"], "--layers": LAYERS, "--k": "2", "--model": setup["model"]}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    model = base.pop("--model")
    argv = ["ingest", model, "--concept", "c", "--db", setup["db"]]
    for flag, value in base.items():
        argv += [flag, value]
    r = runner.invoke(app, argv)
    assert r.exit_code == 1, (case, r.output)
    assert expect in r.output, (case, r.output)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    err_lines = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1, r.output


def test_empty_folder_is_an_error(setup):
    empty = setup["tmp"] / "empty"
    empty.mkdir()
    r = runner.invoke(
        app,
        ["ingest", setup["model"], "--concept", "c", "--images", str(empty), "--layers", LAYERS, "--db", setup["db"]],
    )
    assert r.exit_code == 1 and "no image files" in r.output


def test_crash_during_write_leaves_nothing(setup, monkeypatch):
    """A failure after the edges are written but before commit rolls the whole run back."""
    from catalog import store

    def boom(*a, **k):
        raise RuntimeError("simulated crash while writing the circuit")

    monkeypatch.setattr(store, "write_circuit", boom)
    r = _ingest(setup)
    assert r.exit_code != 0
    monkeypatch.undo()
    assert _sql(setup["db"], "select coalesce(sum(n_src * n_dst), 0) as n from run_matrix")[0]["n"] == 0
    assert _sql(setup["db"], "select count(*) as n from run where status = 'complete'")[0]["n"] == 0
    assert _ingest(setup).exit_code == 0  # the next command works


def _consistent(db):
    r = runner.invoke(app, ["sql", "select id, status from run", "--db", db, "--format", "json"])
    if r.exit_code == 1 and "no catalog in it" in r.output:
        return []  # killed while the new catalog was being created: nothing was written
    assert r.exit_code == 0, r.output
    runs = json.loads(r.stdout)
    complete = [r["id"] for r in runs if r["status"] == "complete"]
    for r in runs:
        n = _sql(db, f"select coalesce(sum(n_src * n_dst), 0) as n from run_matrix where run_id = {r['id']}")[0]["n"]
        assert n == (6 * 8 + 8 * 5 if r["status"] == "complete" else 0), (r, n)
    return complete


@pytest.mark.parametrize(
    "sig, delay",
    [
        # more SIGKILL moments: tests/test_crash_ingest.py (slow) kills at 22 of them
        pytest.param(signal.SIGKILL, 2.5, marks=pytest.mark.slow),
        (signal.SIGKILL, 4.0),
        (signal.SIGINT, 3.0),
    ],
)
def test_killed_ingest_leaves_a_consistent_catalog(setup, sig, delay):
    """A real `circuits ingest` process killed midway: whole run or nothing; the next command works."""
    exe = Path(sys.executable).parent / "circuits"
    argv = [str(exe), *tiny_ingest_args(setup["model"], "noise", setup["images"], setup["db"])]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    time.sleep(delay)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    if os.path.exists(setup["db"]):
        _consistent(setup["db"])
    r = _ingest(setup)
    assert r.exit_code == 0, r.output
    assert len(_consistent(setup["db"])) >= 1


def test_ablate_on_catfish_stores_evaluations_once(tmp_path):
    """Circuit pruning on the bundled model: stored with its baseline; the same call is reused."""
    db = str(tmp_path / "c.duckdb")
    r = runner.invoke(app, catfish_ingest_args("stripes", db, "--n", "8", "--k", "3"))
    assert r.exit_code == 0, r.output
    circuit = _sql(db, "select id from circuit")[0]["id"]
    argv = ["ablate", str(circuit), "--dataset", "catfish:stripes_star", "--n", "16", "--db", db]
    r = runner.invoke(app, argv)
    assert r.exit_code == 0, r.output
    rows = _sql(db, "select metric, clean_value, value, baseline_value, n_images from evaluation order by metric")
    assert [x["metric"] for x in rows] == ["accuracy", "kl", "true_prob"]
    assert all(x["n_images"] == 16 for x in rows)
    kl = rows[1]
    assert kl["clean_value"] == 0 and kl["value"] > 0 and kl["baseline_value"] >= 0
    again = runner.invoke(app, argv)
    assert again.exit_code == 0 and "reused stored intervention" in again.output
    assert _sql(db, "select count(*) as n from intervention")[0]["n"] == 1
    # A primitive alone has no class: measured against the clean model's own top-1 instead.
    r = runner.invoke(app, ["ablate", str(circuit), "--dataset", "catfish:stripes", "--n", "16", "--db", db])
    assert r.exit_code == 0, r.output
    rows = _sql(
        db, "select metric, clean_value, value from evaluation where image_set like 'catfish:stripes#%' order by metric"
    )
    assert [x["metric"] for x in rows] == ["agreement", "clean_top1_prob", "kl"]
    assert rows[0]["clean_value"] == 1.0 and 0.0 <= rows[0]["value"] <= 1.0
    bad = runner.invoke(app, ["ablate", str(circuit), "--dataset", "catfish:stripes", "--label", "nope", "--db", db])
    assert bad.exit_code == 1 and "unknown class 'nope'" in bad.output


def test_folder_with_only_a_corrupt_png_is_a_one_line_error(setup):
    bad = setup["tmp"] / "bad"
    bad.mkdir()
    (bad / "only.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    r = runner.invoke(
        app, ["ingest", setup["model"], "--concept", "c", "--images", str(bad), "--layers", LAYERS, "--db", setup["db"]]
    )
    assert r.exit_code == 1
    assert [line for line in r.output.splitlines() if line.startswith("error:")] == [
        line for line in r.output.splitlines() if line.strip()
    ]
    assert "can be read" in r.output and "only.png" in r.output


def test_refine_stores_fixed_keyed_by_layer_name(setup):
    """`fixed` is layer name -> channels in the catalog, whether the caller names or indexes it."""
    from catalog import store
    from catalog.engine import open_catalog
    from ingest.pipeline import IngestError
    from ingest.refinement import refine

    assert _ingest(setup).exit_code == 0
    run_id = _sql(setup["db"], "select id from run")[0]["id"]
    cat = open_catalog(setup["db"])
    _, by_name = refine(cat, run_id, 2, fixed={"3": [7, 1]})
    _, by_index = refine(cat, run_id, 2, fixed={-1: [4]})
    assert by_name.channels[1] == [1, 7] and by_index.channels[2] == [4]
    with cat.session() as s:
        stored = [c.fixed for c in store.find_circuits(s, run_id=run_id) if c.fixed]
    assert stored == [{"3": [1, 7]}, {"5": [4]}]  # layer names "1,3,5", never str(index); channels sorted by the store
    with pytest.raises(IngestError, match="not a layer of this run"):
        refine(cat, run_id, 2, fixed={"9": [0]})
