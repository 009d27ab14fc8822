"""A contrast CLA run: the edges that writing a word on an image strengthens.

A text concept of words alone (on plain or cluttered backgrounds) gives a circuit that also carries
what the network needs to see anything at all; pruning it costs clean accuracy before it stops the
reading (measured on typo-mini, README "Typographic attacks, measured"). The contrast concept pairs
every image that has a word written on it with the same image without the word and keeps what the
word adds:

    S_i = max(S_i(text images) − S_i(the same images, no text), 0)     (element-wise, per pair i)

with `S_i(·)` the CLA score matrices of `ingest.cla.attribute` (means over each set). On
Typographic-synth the pairs are `typo:attack` and `typo:clean` of one seed (the same CatFish-synth
images; the attack writes a class name on each). The run is stored like any other (concept `text`,
the text images as its examples) with `params["contrast"]` naming the plain set, so its provenance
key differs from a plain run on the same images and a second request reuses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from catalog.engine import Catalog
from catalog.errors import CircuitsError
from ingest.images import ImageSet

__all__ = ["CONTRAST_RULE", "ContrastError", "contrast_ingest", "contrast_matrices"]

CONTRAST_RULE = "max(S_text - S_plain, 0)"  # recorded in the run's params

Progress = Callable[[str, int, int], None]


class ContrastError(CircuitsError):
    """The two image sets of a contrast run do not pair up."""


def contrast_matrices(text: list[np.ndarray], plain: list[np.ndarray]) -> list[np.ndarray]:
    """`max(S_text − S_plain, 0)` per layer pair, float32 (the shapes must match)."""
    if len(text) != len(plain) or any(a.shape != b.shape for a, b in zip(text, plain)):
        raise ContrastError("the text and plain score matrices differ in shape: use the same model and layers")
    return [
        np.maximum(np.asarray(a, np.float64) - np.asarray(b, np.float64), 0.0).astype(np.float32)
        for a, b in zip(text, plain)
    ]


def contrast_ingest(cat: Catalog, config, text_set: ImageSet, plain_set: ImageSet, *, progress: Progress | None = None):
    """Run (or reuse) the contrast CLA run of `text_set` against `plain_set` and store its circuit.

    Args:
        cat: an open, writable catalog.
        config: an `ingest.pipeline.IngestConfig` (model, concept, layers, k, weights, device).
        text_set: images with a word written on them (the run's example images).
        plain_set: the same images without the word, in the same order.
        progress: optional callback (stage, done, total).

    Returns:
        An `ingest.pipeline.IngestResult`, as `ingest.pipeline.ingest` returns it.

    Raises:
        ContrastError: the sets differ in size.
        IngestError, UnknownModel, UnknownLayer, ImageSetError: bad input, before anything is written.
    """
    from ingest import zoo
    from ingest.cla.attribution import attribute
    from ingest.pipeline import ingest_prepared, prepare, provenance_key

    if len(text_set) != len(plain_set) or len(text_set) == 0:
        raise ContrastError(
            f"a contrast run pairs each text image with its plain image: got {len(text_set)} "
            f"text and {len(plain_set)} plain images"
        )
    prepared = prepare(config, text_set)
    x_plain = zoo.preprocess(prepared.preprocessing, list(plain_set.images))

    def scores(p, on_batch) -> list[np.ndarray]:
        def run(x):
            return attribute(
                p.loaded.module,
                p.layers,
                x,
                batch_size=p.config.batch_size,
                device=p.run_fields["device"],
                progress=on_batch,
            )

        return contrast_matrices(run(p.x), run(x_plain))

    # The contrast is part of the run's identity: its params and so its provenance key say so.
    params = {**prepared.run_fields["params"], "contrast": {"plain_sha256": plain_set.sha256, "rule": CONTRAST_RULE}}
    key = provenance_key(prepared.model_fields["weights_sha256"], prepared.layers, text_set.sha256, params)
    run_fields = {**prepared.run_fields, "params": params, "provenance_key": key}
    return ingest_prepared(cat, dataclasses.replace(prepared, run_fields=run_fields, scores=scores), progress=progress)
