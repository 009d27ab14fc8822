"""`circuits export` → `circuits apply` on a catalog built in the test, then a plain model loading
the baked state dict reproduces the hook-pruned predictions."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from _helpers_catalog import write_circuit, write_run
from typer.testing import CliRunner

from catalog import store
from catalog.engine import close_catalogs_of, open_catalog
from catalog.mask_io import read_mask
from circuits.cli.main import app
from ingest import zoo
from ingest.datasets.catfish import CLASS_NAMES, render_concept
from ingest.edit.mask_apply import apply_mask

runner = CliRunner()
CHANNELS = [[3, 40, 60], [1, 20, 50, 63], [0, 30, 75, 95], [5, 40, 100], [2, 64, 127]]  # per catfish-mini layer


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine this is faster and far steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_catfish():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zoo.RandomInitWarning)  # no bundled weights yet: random init
        return zoo.load_model("catfish-mini")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """A DuckDB catalog with catfish-mini (the weights `zoo.load_model` gives), one run, one circuit."""
    tmp = tmp_path_factory.mktemp("masks_cli")
    loaded = load_catfish()
    layers = list(loaded.layers)
    widths = [64, 64, 96, 128, 128]
    rng = np.random.default_rng(0)
    db = tmp / "c.duckdb"
    cat = open_catalog(db, create=True)
    with cat.session() as s, s.begin():
        model = store.ensure_model(
            s,
            name="catfish-mini",
            architecture=loaded.spec.architecture,
            weights_sha256=loaded.weights_sha256,
            layers=list(zip(layers, widths)),
        )
        concept_id = store.ensure_concept(s, "star")
        matrices = [rng.random((a, b), dtype=np.float32) for a, b in zip(widths[:-1], widths[1:])]
        run_id = write_run(s, model, concept_id, matrices, "1" * 64, params={"method": "test"}, n_images=4)
        circuit_id = write_circuit(s, run_id, CHANNELS, history=[1.0, 2.0])
    cat.close()
    yield {"db": str(db), "tmp": tmp, "circuit": circuit_id, "run": run_id, "loaded": loaded}
    close_catalogs_of(db)  # the commands opened it (read-only) in this process


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_export_then_apply_reproduces_hook_pruned_predictions(catalog):
    tmp, cid = catalog["tmp"], catalog["circuit"]
    r = invoke("export", cid, "--kind", "circuit", "-o", tmp / "m.json", "--db", catalog["db"])
    assert r.exit_code == 0, r.output
    assert f"wrote {tmp / 'm.json'} (json): circuit mask for catfish-mini" in r.stdout
    assert "17 channels in 5 modules" in r.stdout and "mixed3b: 4 of 96 channels [0, 30, 75, 95]" in r.stdout
    doc = json.loads((tmp / "m.json").read_text())
    assert doc["catalog"]["circuit_id"] == cid and doc["catalog"]["run_id"] == catalog["run"]
    assert doc["catalog"]["concept"] == "star" and doc["catalog"]["catalog"] == catalog["db"]
    assert doc["model"]["weights_sha256"] == catalog["loaded"].weights_sha256
    assert {k: v["channels"] for k, v in doc["modules"].items()} == dict(zip(catalog["loaded"].layers, CHANNELS))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zoo.RandomInitWarning)
        r = invoke("apply", "catfish-mini", "--mask", tmp / "m.json", "-o", tmp / "pruned.pt")
    assert r.exit_code == 0, r.output
    assert f"wrote {tmp / 'pruned.pt'}: catfish-mini state dict" in r.stdout and "max |diff| = 0" in r.stdout

    plain = zoo.get_spec("catfish-mini").build()
    plain.load_state_dict(torch.load(tmp / "pruned.pt", weights_only=True))
    plain.eval()
    images = np.concatenate([render_concept(name, 2, seed=0) for name in CLASS_NAMES[:4]])
    x = zoo.preprocess(zoo.get_spec("catfish-mini"), images)  # (8, 3, 64, 64)
    model = catalog["loaded"].module
    with torch.no_grad():
        baked = plain(x)
        with apply_mask(model, read_mask(tmp / "m.json")):
            hooked = model(x)
        clean = model(x)
    assert (baked - hooked).abs().max() <= 1e-5
    assert torch.equal(baked.argmax(1), hooked.argmax(1))
    assert (hooked - clean).abs().max() > 1e-4  # ten times the tolerance (random-init logits are small)


def test_safetensors_mask_and_state_dict_match_the_json_path(catalog):
    tmp, cid = catalog["tmp"], catalog["circuit"]
    r = invoke("export", cid, "-o", tmp / "m.safetensors", "--db", catalog["db"])
    assert r.exit_code == 0, r.output and "(safetensors)" in r.stdout
    r2 = invoke("export", cid, "-o", tmp / "same.json", "--db", catalog["db"])
    assert r2.exit_code == 0, r2.output
    assert read_mask(tmp / "m.safetensors") == read_mask(tmp / "same.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zoo.RandomInitWarning)
        r = invoke("apply", "catfish-mini", "--mask", tmp / "m.safetensors", "-o", tmp / "pruned.safetensors")
        r2 = invoke("apply", "catfish-mini", "--mask", tmp / "same.json", "-o", tmp / "same.pt")
    assert r.exit_code == 0 and r2.exit_code == 0, r.output + r2.output
    from safetensors.torch import load_file

    a, b = load_file(str(tmp / "pruned.safetensors")), torch.load(tmp / "same.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_edge_export_and_what_apply_refuses(catalog):
    tmp, cid, db = catalog["tmp"], catalog["circuit"], catalog["db"]
    r = invoke("export", cid, "--kind", "edge", "--pair", 1, "-o", tmp / "e.json", "--db", db)
    assert r.exit_code == 0, r.output
    assert "edge mixed3a → mixed3b (4 → 4 channels)" in r.stdout
    edge = json.loads((tmp / "e.json").read_text())["edge"]
    assert edge == {"src": "mixed3a", "dst": "mixed3b", "src_channels": CHANNELS[1], "dst_channels": CHANNELS[2]}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zoo.RandomInitWarning)
        # an edge mask is not baked (tests/test_masks_deploy.py checks the program written instead)
        from ingest.edit.deploy import bakeable

        assert "edge mask cannot be baked" in bakeable(catalog["loaded"].module, read_mask(tmp / "e.json"))

        doc = json.loads((tmp / "e.json").read_text())
        doc.update(kind="circuit", edge=None)
        doc["model"]["weights_sha256"] = "f" * 64
        (tmp / "other.json").write_text(json.dumps(doc))
        r = invoke("apply", "catfish-mini", "--mask", tmp / "other.json", "-o", tmp / "x.pt")
        assert r.exit_code == 1
        assert (
            f"mask was made for weights ffffffffffff… but the model's weights are {catalog['loaded'].weights_sha256[:12]}…"
            in r.output
        )
        assert "pass the weights the circuit was found on (--weights)" in r.output

        # other weights given with --weights: refused, naming both hashes (this test's own mask:
        # test processes take tests in any order)
        assert invoke("export", cid, "-o", tmp / "c.json", "--db", db).exit_code == 0
        other = zoo.get_spec("catfish-mini").build()
        torch.save(other.state_dict(), tmp / "other_weights.pt")
        r = invoke(
            "apply",
            "catfish-mini",
            "--mask",
            tmp / "c.json",
            "-o",
            tmp / "x.pt",
            "--weights",
            tmp / "other_weights.pt",
        )
        assert r.exit_code == 1 and "mask was made for weights" in r.output

        r = invoke("apply", "googlenet", "--mask", tmp / "e.json", "-o", tmp / "x.pt")
        assert r.exit_code == 1 and "was made for model 'catfish-mini', not 'googlenet'" in r.output
    assert not (tmp / "x.pt").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", 999, "-o", "m.json"], "no circuit 999"),
        (["export", "{cid}", "--kind", "edge", "--pair", 4, "-o", "m.json"], "edge pair 4 is out of range"),
        (["export", "{cid}", "-o", "m.pt"], "name the file *.json or *.safetensors"),
        (["apply", "catfish-mini", "--mask", "missing.json", "-o", "x.pt"], "does not exist"),
    ],
)
def test_bad_requests_exit_1_with_a_message(catalog, args, message, monkeypatch):
    monkeypatch.chdir(catalog["tmp"])
    args = [str(a).replace("{cid}", str(catalog["circuit"])) for a in args]
    r = invoke(*args, *(["--db", catalog["db"]] if args[0] == "export" else []))
    assert r.exit_code == 1 and message in r.output, r.output
