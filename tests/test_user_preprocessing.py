"""A user model at its own preprocessing: a 64-px CNN trained on [0, 1]
inputs is ingested at 64 px without normalisation, and its ablation accuracy is measured on
the inputs it was trained on. Also: declared preprocessing and class names, overrides, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _helpers_cli import sql_rows as _sql
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from circuits.cli.main import app

runner = CliRunner()
SIZE = 64
CLASSES = ("square", "stripes")
NET = '''
import torch
from torch import nn

from ingest.zoo import Preprocessing, declare


class Net(nn.Module):
    """64×64 RGB in [0, 1] -> 2 classes; the flatten makes the input size part of the model."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU())    # 32×32
        self.c2 = nn.Sequential(nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU())   # 16×16
        self.c3 = nn.Sequential(nn.Conv2d(12, 16, 3, stride=2, padding=1), nn.ReLU())  # 8×8
        self.head = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(16 * 2 * 2, 2))

    def forward(self, x):
        return self.head(self.c3(self.c2(self.c1(x))))


def build():
    return Net()


@declare(preprocessing=Preprocessing(size=64), class_names=["square", "stripes"], layers=["c1", "c2", "c3"])
def build_declared():
    return Net()
'''


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Half bright squares on dark noise, half dark stripes on a bright field: uint8 (n, 64, 64, 3)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    labels = np.arange(n) % 2
    for i, y in enumerate(labels):
        if y == 0:
            img = rng.integers(0, 70, (SIZE, SIZE, 3))
            s = int(rng.integers(14, 28))
            r, c = rng.integers(0, SIZE - s, 2)
            img[r : r + s, c : c + s] = rng.integers(180, 256, 3)
        else:
            img = rng.integers(150, 256, (SIZE, SIZE, 3))
            period, phase = int(rng.integers(6, 12)), int(rng.integers(0, 12))
            rows = ((np.arange(SIZE) + phase) // (period // 2)) % 2 == 0
            img[rows] = rng.integers(0, 60, 3)
        out[i] = img
    return out, labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The model file, its weights trained on [0, 1] 64-px inputs, and image folders per class."""
    tmp = tmp_path_factory.mktemp("usermodel")
    (tmp / "net.py").write_text(NET)
    from ingest.zoo.user import user_spec

    torch.manual_seed(0)
    net = user_spec(f"{tmp / 'net.py'}:build").build()
    x, y = _images(160, seed=0)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255  # [0, 1], no normalisation
    yt = torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(120):
        idx = torch.randint(0, len(xt), (32,))
        loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    torch.save(net.state_dict(), tmp / "net.pt")
    test_x, test_y = _images(24, seed=1)
    for cls in (0, 1):
        folder = tmp / CLASSES[cls]
        folder.mkdir()
        for i in np.flatnonzero(test_y == cls):
            Image.fromarray(test_x[i]).save(folder / f"{i:02d}.png")
    (tmp / "classes.txt").write_text("# logit order\nsquare\nstripes\n")
    with torch.no_grad():
        acc = (net(torch.from_numpy(test_x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy() == test_y).mean()
    assert acc >= 0.9, f"the fixture model did not learn ({acc:.2f}); the test below would mean nothing"
    return tmp


def _ablate_rows(output: str) -> dict[str, tuple[float, float, float]]:
    rows = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in ("accuracy", "true_prob", "kl", "agreement"):
            rows[parts[0]] = tuple(float(v) for v in parts[1:])
    return rows


def test_user_model_ingests_and_ablates_at_its_own_preprocessing(trained, tmp_path):
    db = str(tmp_path / "c.duckdb")
    model = f"{trained / 'net.py'}:build"
    weights = str(trained / "net.pt")
    r = runner.invoke(
        app,
        [
            "ingest",
            model,
            "--concept",
            "square",
            "--images",
            str(trained / "square"),
            "--layers",
            "c1,c2,c3",
            "--k",
            "3",
            "--weights",
            weights,
            "--db",
            db,
        ],
    )
    assert r.exit_code == 0, r.output
    assert "inputs: own size, no normalisation, RGB [0, 1]" in r.output
    (run,) = _sql(db, "select id, params from run")
    params = json.loads(run["params"]) if isinstance(run["params"], str) else run["params"]
    assert params["input_size"] == SIZE  # the images' own size: nothing was resized
    assert params["preprocessing"] == {"size": None, "resize": "crop", "mean": None, "std": None, "channels": 3}
    (circuit,) = _sql(db, "select id from circuit")

    r = runner.invoke(app, _ablate_square(circuit["id"], trained, db, "--classes", str(trained / "classes.txt")))
    assert r.exit_code == 0, r.output
    rows = _ablate_rows(r.output)
    clean_acc = rows["accuracy"][0]
    assert clean_acc >= 0.9, r.output  # chance is 0.5: the model saw the inputs it was trained on
    assert rows["true_prob"][0] > 0.8, r.output


def test_old_imagenet_defaults_would_have_fed_the_model_garbage(trained):
    """The reason for the change: the same images at 224 px with ImageNet statistics."""
    from ingest import zoo

    loaded = zoo.load_model(f"{trained / 'net.py'}:build", weights=trained / "net.pt", layers=["c1", "c2"])
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((trained / "square").glob("*.png"))]
    own = zoo.preprocess(loaded.spec, images)
    assert own.shape[-1] == SIZE and float(own.min()) >= 0 and float(own.max()) <= 1
    imagenet = zoo.Preprocessing(size=224, mean=zoo.IMAGENET_MEAN, std=zoo.IMAGENET_STD)
    with torch.no_grad():
        assert (loaded.module(own).argmax(1) == 0).float().mean() >= 0.9
        with pytest.raises(RuntimeError):  # the flatten + linear head only takes 64-px inputs
            loaded.module(zoo.preprocess(imagenet, images))


def test_declared_preprocessing_and_class_names(trained, tmp_path):
    db = str(tmp_path / "c.duckdb")
    model = f"{trained / 'net.py'}:build_declared"
    from ingest import zoo

    spec = zoo.get_spec(model)
    assert spec.layers == ("c1", "c2", "c3") and spec.labels == CLASSES
    assert spec.preprocessing == zoo.Preprocessing(size=SIZE)
    # 80-px images are resized to the declared 64 (keep-size would refuse mixed sizes).
    folder = tmp_path / "big"
    folder.mkdir()
    for p in sorted((trained / "stripes").glob("*.png")):
        Image.open(p).resize((80, 80)).save(folder / p.name)
    r = runner.invoke(
        app,
        [
            "ingest",
            model,
            "--concept",
            "stripes",
            "--images",
            str(folder),
            "--k",
            "2",
            "--weights",
            str(trained / "net.pt"),
            "--db",
            db,
        ],
    )
    assert r.exit_code == 0, r.output
    (circuit,) = _sql(db, "select id from circuit")
    r = runner.invoke(
        app,
        [
            "ablate",
            str(circuit["id"]),
            "--images",
            str(folder),
            "--label",
            "stripes",
            "--weights",
            str(trained / "net.pt"),
            "--model",
            model,
            "--db",
            db,
        ],
    )
    assert r.exit_code == 0, r.output
    assert _ablate_rows(r.output)["accuracy"][0] >= 0.9, r.output


def test_mixed_sizes_are_refused_naming_the_options(trained, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (64, 64)).save(folder / "a.png")
    Image.new("RGB", (48, 40)).save(folder / "b.png")
    r = runner.invoke(
        app,
        [
            "ingest",
            f"{trained / 'net.py'}:build",
            "--concept",
            "x",
            "--images",
            str(folder),
            "--layers",
            "c1,c2",
            "--weights",
            str(trained / "net.pt"),
            "--db",
            str(tmp_path / "c.duckdb"),
        ],
    )
    assert r.exit_code == 1
    (line,) = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert "2 different sizes" in line and "--input-size" in line and "--resize" in line


def _ingest_square(trained, db: str) -> list[str]:
    """`circuits ingest` of the trained user net on its "square" images, layers c1,c2, k = 2."""
    images, weights = str(trained / "square"), str(trained / "net.pt")
    options = {"--concept": "square", "--images": images, "--layers": "c1,c2", "--k": "2", "--weights": weights}
    return ["ingest", f"{trained / 'net.py'}:build", *(x for pair in options.items() for x in pair), "--db", db]


def _ablate_square(circuit_id: int, trained, db: str, *extra: str) -> list[str]:
    """`circuits ablate` of a circuit of the trained user net on its "square" images, labelled square."""
    images, weights, model = str(trained / "square"), str(trained / "net.pt"), f"{trained / 'net.py'}:build"
    options = {"--images": images, "--label": "square", "--weights": weights, "--model": model, "--db": db}
    return ["ablate", str(circuit_id), *(x for pair in options.items() for x in pair), *extra]


def test_overrides_change_the_provenance_key(trained, tmp_path):
    db = str(tmp_path / "c.duckdb")
    base = _ingest_square(trained, db)
    assert runner.invoke(app, base).exit_code == 0
    r = runner.invoke(app, [*base, "--normalize", "0.5,0.5,0.5:0.25,0.25,0.25"])
    assert r.exit_code == 0 and "stored run" in r.output, r.output  # not reused: other inputs
    r = runner.invoke(app, [*base, "--normalize", "none"])
    assert "reused run" in r.output, r.output  # the same as the default
    runs = _sql(db, "select params from run order by id")
    second = runs[1]["params"] if isinstance(runs[1]["params"], dict) else json.loads(runs[1]["params"])
    assert second["preprocessing"]["mean"] == [0.5, 0.5, 0.5] and second["preprocessing"]["std"] == [0.25] * 3


def test_ablate_label_without_class_names_names_the_option(trained, tmp_path):
    db = str(tmp_path / "c.duckdb")
    r = runner.invoke(app, _ingest_square(trained, db))
    assert r.exit_code == 0, r.output
    (circuit,) = _sql(db, "select id from circuit")
    r = runner.invoke(app, _ablate_square(circuit["id"], trained, db))
    assert r.exit_code == 1 and "--classes FILE" in r.output, r.output
