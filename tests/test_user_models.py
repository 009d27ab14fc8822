"""User models as people write them: a model file that imports a module beside it, and a model
whose forward raises (one `error:` line naming the model code, the command and the message;
`circuits --debug` shows the traceback)."""

from __future__ import annotations

import pytest
from _helpers_cli import noise_images
from _helpers_models import two_conv_model
from typer.testing import CliRunner

from circuits.cli.main import app

runner = CliRunner()

MYNET = """
import torch
from torch import nn

class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x):
        if x.min() < 0:
            raise ValueError("TinyNet takes images in [0, 1]")
        return self.head(torch.relu(self.c2(torch.relu(self.c1(x)))))
"""

MODEL = """
from mynet import TinyNet  # a module beside this file, as `python model.py` would find it

def build():
    return TinyNet()
"""


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    (models / "mynet.py").write_text(MYNET)
    (models / "model.py").write_text(MODEL)
    noise_images(tmp_path / "imgs", 3)
    monkeypatch.chdir(tmp_path)  # the model's folder is not the working directory
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))  # sys.path restored after the test
    return tmp_path


def ingest(*extra):
    argv = ["ingest", "models/model.py:build", "--concept", "noise", "--images", "imgs", "--layers", "c1,c2"]
    return runner.invoke(app, [*argv, "--k", "2", "--db", "c.duckdb", *extra])


def test_a_model_file_imports_the_module_beside_it_and_random_init_is_flagged(folder):
    r = ingest()
    assert r.exit_code == 0, r.output
    assert (folder / "c.duckdb").exists()
    # no weights were given: the run is random-init, and every reader is told
    r = runner.invoke(app, ["list", "runs", "--db", "c.duckdb", "--format", "json"])
    assert r.exit_code == 0 and '"weights": "RANDOM-INIT"' in r.stdout, r.output
    r = runner.invoke(app, ["show", "1", "--db", "c.duckdb"])
    assert r.stdout.splitlines()[1].startswith("warning: RANDOM-INIT weights: this run used an untrained network")
    r = runner.invoke(app, ["show", "1", "--db", "c.duckdb", "--format", "json"])
    assert '"weights_source": "random-init"' in r.stdout
    from catalog.engine import open_catalog
    from circuits.web import data, pages

    cat = open_catalog("c.duckdb", read_only=True)
    with cat.session() as s:
        page = pages.Pages(cat.display).circuit(data.circuit_view(s, 1))
    assert '<p class="warning"><strong>RANDOM-INIT weights' in page
    assert "RANDOM-INIT weights" in pages.report_html(cat, 1)[1]
    cat.close()


def test_an_exception_in_the_users_forward_is_one_line_and_writes_nothing(folder):
    r = ingest("--normalize", "imagenet", "--threads", "1")
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith("error: the model's own code raised ValueError in forward (mynet.py, line ")
    assert "TinyNet takes images in [0, 1]" in line and "--debug" in line
    assert not (folder / "c.duckdb").exists()

    r = runner.invoke(
        app,
        ["--debug", "ingest", "models/model.py:build", "--concept", "noise", "--images", "imgs"]
        + ["--layers", "c1,c2", "--k", "2", "--db", "c.duckdb", "--normalize", "imagenet"],
    )
    assert r.exit_code == 1 and "Traceback" in r.stderr and "mynet.py" in r.stderr, r.stderr
    assert "ValueError: TinyNet takes images in [0, 1]" in r.stderr


HANGS = two_conv_model("while True:\n    pass")


def test_a_model_that_hangs_past_timeout(folder):
    (folder / "models" / "hang.py").write_text(HANGS)
    argv = ["ingest", "models/hang.py:build", "--concept", "noise", "--images", "imgs", "--layers", "c1,c2"]
    r = runner.invoke(app, [*argv, "--k", "2", "--db", "c.duckdb", "--timeout", "1"])
    assert r.exit_code == 1, r.output
    assert r.stderr.strip().splitlines() == [
        "error: the model's forward pass on one image ran longer than 1 s (--timeout): the model hangs or is far too slow"
    ]
    assert not (folder / "c.duckdb").exists()


SOMETIMES_HANGS = two_conv_model(
    """
    while os.path.exists("hang"):
        pass
    return self.head(self.c2(self.c1(x)))
    """,
    head=True,
    imports="import os\n",
)


def test_ablate_and_apply_refuse_a_model_that_hangs_past_timeout(folder):
    (folder / "models" / "some.py").write_text(SOMETIMES_HANGS)
    model = "models/some.py:build"
    argv = ["ingest", model, "--concept", "noise", "--images", "imgs", "--layers", "c1,c2", "--k", "2"]
    r = runner.invoke(app, [*argv, "--db", "c.duckdb"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["export", "1", "-o", "m.json", "--db", "c.duckdb"])
    assert r.exit_code == 0, r.output
    (folder / "hang").write_text("")
    before = sorted(p.name for p in folder.iterdir())
    expected = "ran longer than 1 s (--timeout): the model hangs or is far too slow"
    r = runner.invoke(app, ["ablate", "1", "--model", model, "--images", "imgs", "--timeout", "1", "--db", "c.duckdb"])
    assert r.exit_code == 1 and expected in r.stderr and r.stderr.count("error:") == 1, r.output
    r = runner.invoke(app, ["apply", model, "--mask", "m.json", "-o", "p.pt", "--timeout", "1"])
    assert r.exit_code == 1 and expected in r.stderr and r.stderr.count("error:") == 1, r.output
    assert sorted(p.name for p in folder.iterdir()) == before
