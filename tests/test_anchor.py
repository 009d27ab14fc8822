"""Class-anchored circuits from the command line: `ingest --anchor CLASS` stores a circuit whose
class layer is that one logit (shown by class name), `ablate` keeps the anchor unless
--prune-anchor, and pruning logits is warned about."""

from __future__ import annotations

import json
import warnings

import pytest
from typer.testing import CliRunner

from catalog.engine import close_catalogs_of
from circuits.cli.main import app
from ingest import zoo

runner = CliRunner()
LAYERS = "mixed4a,mixed4b,fc"


def invoke(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zoo.RandomInitWarning)
        return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def anchored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("anchor")
    db = tmp / "c.duckdb"
    r = invoke(
        "ingest", "catfish-mini", "--concept", "stripes_star", "--dataset", "catfish:stripes_star", "--n", 4,
        "--layers", LAYERS, "--k", "3,3,2", "--anchor", "stripes_star", "--threads", 1, "--db", db,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    plain = int(r.stdout.split(" and circuit ")[1].split()[0])
    line = next(x for x in r.stdout.splitlines() if x.startswith("anchored circuit "))
    yield {"db": db, "tmp": tmp, "plain": plain, "anchored": int(line.split()[2]), "line": line}
    close_catalogs_of(db)


def test_ingest_anchor_fixes_the_class_logit_and_shows_the_class_name(anchored):
    index = list(zoo.get_spec("catfish-mini").labels).index("stripes_star")
    assert f"on fc:{index} (stripes_star)" in anchored["line"] and "k=3,3,1" in anchored["line"]
    r = invoke("show", anchored["anchored"], "--db", anchored["db"])
    assert r.exit_code == 0, r.output
    assert f"anchored (fixed) on fc:{index} (stripes_star)" in r.stdout
    assert f"{index} (stripes_star)" in r.stdout.split("neurons per layer:")[1]
    r = invoke("show", anchored["anchored"], "--db", anchored["db"], "--format", "json")
    fc = json.loads(r.stdout)["layers"][-1]
    assert fc["channels"] == [index] and fc["labels"] == ["stripes_star"]
    # the unanchored circuit's logits are named too (the class layer's neurons are labelled)
    r = invoke("show", anchored["plain"], "--db", anchored["db"], "--format", "json")
    fc = json.loads(r.stdout)["layers"][-1]
    names = zoo.get_spec("catfish-mini").labels
    assert len(fc["channels"]) == 2 and fc["labels"] == [names[c] for c in fc["channels"]]


def test_ablate_keeps_the_anchor_and_warns_when_logits_are_pruned(anchored):
    common = ("--dataset", "catfish:stripes_star", "--n", 4, "--threads", 1, "--db", anchored["db"])
    r = invoke("ablate", anchored["anchored"], *common)
    assert r.exit_code == 0, r.output
    assert "warning:" not in r.output
    r = invoke("ablate", anchored["anchored"], "--prune-anchor", *common)
    assert r.exit_code == 0, r.output
    assert "warning: the pruned neurons include 1 of the output layer's logits (fc: " in r.stderr
    r = invoke("ablate", anchored["plain"], *common)
    assert r.exit_code == 0, r.output
    assert "warning: the pruned neurons include 2 of the output layer's logits" in r.stderr
    assert "--anchor CLASS" in r.stderr
    # kept and pruned anchors are two interventions, not one reused
    r = invoke("show", anchored["anchored"], "--db", anchored["db"], "--format", "json")
    params = [iv["params"].get("anchor") for iv in json.loads(r.stdout)["interventions"]]
    assert params == ["kept", "pruned"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--layers", LAYERS, "--anchor", "zebra"), "--anchor 'zebra' is not one of the model's 12 class names"),
        (("--layers", LAYERS, "--anchor", "99"), "the class layer has 12 logits, use 0…11"),
        (("--layers", "mixed4a,mixed4b", "--anchor", "1"), "must be the last of --layers: add fc"),
    ],
)
def test_bad_anchor_is_one_error_line_and_writes_nothing(tmp_path, extra, message):
    db = tmp_path / "new.duckdb"
    r = invoke(
        "ingest", "catfish-mini", "--concept", "x", "--dataset", "catfish:stripes_star", "--n", 2, "--k", 2,
        *extra, "--db", db,
    )  # fmt: skip
    assert r.exit_code == 1 and message in r.output and r.output.count("error:") == 1, r.output
    assert not db.exists()


def test_anchor_on_a_model_without_a_class_layer(tmp_path):
    (tmp_path / "feat.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))\n"
    )
    (tmp_path / "imgs").mkdir()
    db = tmp_path / "new.duckdb"
    r = invoke(
        "ingest", f"{tmp_path / 'feat.py'}:build", "--concept", "x", "--dataset", "catfish:stripes_star", "--n", 2,
        "--layers", "0,2", "--k", 2, "--anchor", "1", "--db", db,
    )  # fmt: skip
    assert r.exit_code == 1 and "--anchor needs a model whose output is class logits" in r.output, r.output
    assert not db.exists()


def test_export_leaves_the_anchor_out_of_the_mask(anchored):
    tmp, db = anchored["tmp"], anchored["db"]
    r = invoke("export", anchored["anchored"], "-o", tmp / "a.json", "--db", db)
    assert r.exit_code == 0, r.output
    assert set(json.loads((tmp / "a.json").read_text())["modules"]) == {"mixed4a", "mixed4b"}
    r = invoke("export", anchored["anchored"], "-o", tmp / "b.json", "--prune-anchor", "--db", db)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp / "b.json").read_text())["modules"]["fc"]["channels"] == [2]
