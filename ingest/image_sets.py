"""Image sets by name: a folder of files, or a bundled rendered dataset (`catfish:NAME`, `typo:SET`).

`resolve_images(images=DIR)` or `resolve_images(dataset="catfish:stripes", n=32, seed=0)`; the
sets' names follow `catalog.image_set_names` (`catfish:stripes#seed=0`, images `…#i`).
"""

from __future__ import annotations

import numpy as np

from catalog.image_set_names import image_set_name
from ingest.images import ImageSet, ImageSetError, read_image_dir, rendered_image_set

__all__ = ["resolve_images"]


def resolve_images(
    *, images: str | None = None, dataset: str | None = None, n: int = 32, seed: int = 0, recursive: bool = False
) -> ImageSet:
    """The images of `images=` (a folder; sub-folders too with `recursive`) or of `dataset=`.

    Args:
        images: a folder of image files.
        dataset: a bundled set: `catfish:NAME` (a CatFish-synth primitive or class) or
            `typo:clean[:C]`, `typo:attack[:C]`, `typo:text` (Typographic-synth), or `photo:NAME`
            (views of the walkthrough's photographs: cat, espresso, rocket, motorcycle).
        n: images rendered for `dataset`.
        seed: their seed.
        recursive: read the folder's sub-folders too.

    Raises:
        ImageSetError: neither or both of `images=` and `dataset=`, an unknown dataset, or a
            folder without a readable image.
    """
    if (images is None) == (dataset is None):
        raise ImageSetError("give exactly one of `images=` (a folder) or `dataset=` (e.g. catfish:stripes)")
    if images is not None:
        return read_image_dir(images, recursive=recursive)
    assert dataset is not None
    kind, _, name = dataset.partition(":")
    if kind == "typo":  # Typographic-synth: typo:clean[:C], typo:attack[:C], typo:text
        from ingest.datasets.typo_sets import typo_image_set

        return typo_image_set(dataset, n, seed=seed)
    if kind == "photo":  # the walkthrough's photographs (scikit-image's bundled data): photo:cat, …
        from ingest.datasets.photos import photo_image_set

        return photo_image_set(name, n, seed=seed)
    if kind != "catfish" or not name:
        raise ImageSetError(f"unknown dataset {dataset!r}: use catfish:NAME, typo:SET or photo:NAME (`dataset=`)")
    from ingest.datasets import catfish

    pixels = catfish.render_concept(name, n, seed=seed)
    labels = None
    if name in catfish.CLASS_NAMES:
        labels = np.full(len(pixels), catfish.CLASS_NAMES.index(name), dtype=np.int64)
    return rendered_image_set(image_set_name("catfish", name, seed), pixels, labels)
