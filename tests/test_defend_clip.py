"""The zero-shot CLIP harness, for plumbing only (random init, a small CLIP-RN tower, random or
given class embeddings): shapes, hooks at the tower's layer names, stored rows, bad input."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from catalog import store
from catalog.engine import close_catalogs_of, open_catalog
from circuits.cli.main import app
from ingest.defence.clip import NoZeroShotHead, ZeroShotClassifier, class_embeddings, clip_target
from ingest.defence.defend import DefendConfig, defend
from ingest.edit.interventions import prune_circuit
from ingest.zoo import registry
from ingest.zoo.clip_rn50 import STAGE_LAYERS, ModifiedResNet
from queries.graphs import query_arrow

runner = CliRunner()
TINY = "clip-rn-tiny-test"
CLASSES = ["apple", "ipod", "dog"]


def _tiny_tower() -> ModifiedResNet:
    return ModifiedResNet(layers=(1, 1, 1, 1), output_dim=32, heads=2, image_size=64, width=8)


@pytest.fixture(scope="module", autouse=True)
def tiny_clip():
    """A small CLIP-RN image tower in the zoo, spec as clip-rn50's but 64-pixel input."""
    clip = registry.get_spec("clip-rn50")
    small = dataclasses.replace(clip.preprocessing, size=64)
    registry.register(
        TINY, lambda: dataclasses.replace(clip, name=TINY, build=_tiny_tower, preprocessing=small, layers=STAGE_LAYERS)
    )
    yield
    registry._REGISTRY.pop(TINY, None)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in CLASSES[:2]:
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    return tmp_path / "imgs"


def _counts(path) -> dict[str, int]:
    cat = open_catalog(path)
    with cat.session() as s:
        return {
            t: query_arrow(s, f"SELECT count(*) AS n FROM {t}").column("n")[0].as_py()
            for t in ("run", "circuit", "intervention", "evaluation", "concept")
        }


def test_zero_shot_classifier_keeps_the_tower_layer_names():
    torch.manual_seed(0)
    tower = _tiny_tower().eval()
    emb = class_embeddings(CLASSES, 32, random_embeddings=True)
    clf = ZeroShotClassifier(tower, emb).eval()
    x = torch.randn(2, 3, 64, 64)
    logits = clf(x)
    assert logits.shape == (2, 3)
    z = torch.nn.functional.normalize(tower(x), dim=-1)
    assert torch.allclose(logits, 100 * z @ torch.nn.functional.normalize(emb, dim=-1).T, atol=1e-5)
    assert clf.get_submodule("layer2") is tower.layer2
    with prune_circuit(clf, ["layer2", "layer3"], [[0, 1], [2]]):
        pruned = clf(x)
    assert not torch.allclose(pruned, logits)
    assert torch.equal(clf(x), logits)  # hooks removed
    assert set(clf.state_dict()) == set(tower.state_dict()) | {"class_embeddings"}


def test_class_embeddings_from_a_file_and_bad_files(tmp_path):
    torch.save({"apple": torch.ones(32), "ipod": torch.zeros(32), "dog": torch.ones(32)}, tmp_path / "e.pt")
    assert class_embeddings(CLASSES, 32, path=tmp_path / "e.pt").shape == (3, 32)
    np.save(tmp_path / "e.npy", np.ones((3, 16)))
    with pytest.raises(NoZeroShotHead, match="16-d"):
        class_embeddings(CLASSES, 32, path=tmp_path / "e.npy")
    with pytest.raises(NoZeroShotHead, match="'cat'"):
        class_embeddings(["cat", "dog"], 32, path=tmp_path / "e.pt")
    import importlib.util

    if importlib.util.find_spec("open_clip") is None:  # found, not imported: importing it takes seconds
        with pytest.raises(NoZeroShotHead, match="open-clip-torch"):
            class_embeddings(CLASSES, 32)


def test_defend_loop_runs_on_a_zero_shot_clip_tower(catalog_path, folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random init, on purpose
        target = clip_target(TINY, CLASSES, folder, random_embeddings=True, n_text=6, seed=0)
        assert target.attack_set.images[0].shape == (80, 96, 3)
        assert len(target.attack_set) == 6 and set(target.clean_sets) == {"apple", "ipod"}
        assert all(w != lab for w, lab in zip(target.attack_set.written, target.attack_set.labels))
        assert target.text_set.images[0].shape == (64, 64, 3)
        cat = open_catalog(catalog_path)
        config = DefendConfig(model=TINY, ks=(2,), kinds=("circuit", "edge"), n_baselines=2, device="cpu")
        report = defend(cat, config, target)
    assert [(r.kind, r.pair) for r in report.rows] == [("circuit", None), ("edge", 0), ("edge", 1), ("edge", 2)]
    for r in report.rows:
        assert 0 <= r.attack_success <= 1 and 0 <= r.clean_accuracy <= 1 and r.edge_fraction > 0
    with cat.session() as s:
        ivs = store.list_interventions(s, report.rows[0].circuit_id)
        metrics = {e.metric for iv in ivs for e in iv.evaluations}
        assert {"attack_success", "attack_accuracy", "accuracy"} <= metrics
        circ = store.read_circuit(s, report.rows[0].circuit_id)
        assert circ.model == TINY and list(circ.layer_names) == ["layer1", "layer2", "layer3", "layer4"]
    close_catalogs_of(catalog_path)


def test_defend_cli_zero_shot_and_its_bad_input(catalog_path, folder, tmp_path):
    base = [
        "defend",
        TINY,
        "--images",
        str(folder),
        "--random-embeddings",
        "--n-text",
        "6",
        "--k",
        "1",
        "--kinds",
        "circuit",
        "--device",
        "cpu",
        "--db",
        str(catalog_path),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = runner.invoke(app, [*base, "--classes", ",".join(CLASSES), "--format", "csv"])
        assert r.exit_code == 0, r.output
        assert r.stdout.splitlines()[0].startswith("circuit,k,kind")
        before = _counts(catalog_path)
        cases = [
            (["--classes", "apple,ipod,dog", "--label", "pear"], "unknown class 'pear'"),
            (["--classes", "apple"], "at least two"),
            (["--classes", "cat,cow"], "no subfolder named after a class"),
            (
                ["--classes", "apple,ipod,dog", "--attack-images", str(folder / "apple"), "--label", "apple"],
                "written.csv",
            ),
        ]
        for extra, message in cases:
            r = runner.invoke(app, [*base, *extra])
            lines = r.output.strip().splitlines()
            assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], (
                r.output
            )
        r = runner.invoke(
            app, ["defend", "typo-mini", "--classes", "a,b", "--images", str(folder), "--db", str(catalog_path)]
        )
        assert r.exit_code == 1 and "own classes" in r.output
        emb = tmp_path / "e.npy"
        np.save(emb, np.ones((3, 7)))
        r = runner.invoke(
            app, [*base[:-6], "--classes", ",".join(CLASSES), "--class-embeddings", str(emb), "--db", str(catalog_path)]
        )
        assert r.exit_code == 1 and "7-d" in r.output
    assert _counts(catalog_path) == before
