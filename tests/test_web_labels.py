"""Class names of logit neurons come from the catalog: an ingest that ends at the model's class
layer labels its neurons in the run's transaction (`ingest.writer.class_labels`), and the web view
reads only those labels, so drawing a circuit never imports torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
from _helpers_catalog import write_circuit, write_run

from catalog import store
from catalog.engine import close_catalogs_of, open_catalog
from ingest.writer import class_labels

ROOT = Path(__file__).parent.parent
NAMES = ("cat", "fish", "star")


def test_class_labels_only_for_a_logit_layer_of_the_labels_width():
    assert class_labels(NAMES, ("c1", "c2"), "fc", 3) == NAMES
    assert class_labels(NAMES, ("c1", "fc"), "fc", 3) is None  # a hidden CLA layer is no class layer
    assert class_labels(NAMES, ("c1",), "fc", 4) is None  # not one channel per class
    assert class_labels(None, ("c1",), "fc", 3) is None and class_labels((), ("c1",), "fc", 0) is None


def _catalog(path: Path) -> int:
    """A catalog of a built-in model's name (catfish-mini) whose run ends at its logits, labelled;
    returns the circuit id."""
    cat = open_catalog(path, create=True)
    with cat.session() as s, s.begin():
        model = store.ensure_model(
            s, name="catfish-mini", architecture="cnn", weights_sha256="0" * 64, layers=[("mixed4b", 4), ("fc", 3)]
        )
        concept_id = store.ensure_concept(s, "stripes")
        run = write_run(s, model, concept_id, [np.random.default_rng(0).random((4, 3), dtype=np.float32)], "2" * 64)
        circuit = write_circuit(s, run, [[0, 1], [1, 2]])
        store.label_neurons(s, model.id, "fc", list(NAMES))
    close_catalogs_of(path)
    return circuit


def test_the_circuit_page_shows_class_names_without_importing_torch(tmp_path):
    path = tmp_path / "c.duckdb"
    circuit = _catalog(path)
    script = textwrap.dedent(
        f"""
        import sys
        from catalog.engine import open_catalog
        from circuits.web import data
        from circuits.web.pages import Pages, report_html

        cat = open_catalog({str(path)!r}, read_only=True)
        with cat.session() as s:
            view = data.circuit_view(s, {circuit}, db=cat.display)
            neuron = data.neuron_view(s, "catfish-mini", "fc", 2)
        page = Pages(cat.display).circuit(view)
        _, report = report_html(cat, {circuit})
        assert "fish" in page and "star" in page and "star" in report, page
        assert neuron.label == "star", neuron.label
        assert [n.label for n in view.nodes if n.layer == "fc"] == ["fish", "star", "cat"], view.nodes
        heavy = sorted(m for m in ("torch", "torchvision", "ingest.zoo") if m in sys.modules)
        assert not heavy, heavy
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


def test_an_ingest_ending_at_the_class_layer_labels_it_and_keeps_given_labels(tmp_path):
    from ingest import zoo
    from ingest.image_sets import resolve_images
    from ingest.pipeline import IngestConfig, ingest_concept

    names = list(zoo.get_spec("catfish-mini").labels or ())
    images = resolve_images(dataset="catfish:stripes_star", n=4, seed=0)
    cat = open_catalog(tmp_path / "c.duckdb", create=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zoo.RandomInitWarning)
        config = IngestConfig("catfish-mini", "stripes_star", layers=("mixed4a", "mixed4b", "fc"), k=2, device="cpu")
        run = ingest_concept(cat, config, images).run_id
        with cat.session() as s:
            model_id = store.read_run(s, run).model_id
            assert store.neuron_labels(s, model_id, "fc") == dict(enumerate(names))
            assert store.neuron_labels(s, model_id, "mixed4b") == {}
        given = [f"class {i}" for i in range(len(names))]  # e.g. from `ingest --classes FILE`
        with cat.session() as s, s.begin():
            store.label_neurons(s, model_id, "fc", given)
        other = IngestConfig("catfish-mini", "dots", layers=("mixed4a", "mixed4b", "fc"), k=2, device="cpu")
        ingest_concept(cat, other, resolve_images(dataset="catfish:stripes_star", n=4, seed=1))
    with cat.session() as s:
        assert store.neuron_labels(s, model_id, "fc") == dict(enumerate(given))
    cat.close()
