"""A model's reference image set: where each circuit neuron's top examples come from when the
concept's own images cannot tell the neurons apart (8 views of one cat photo show every neuron
the same cat face).

- catfish-mini: CatFish-synth, `per_class` rendered images of each of its 12 classes;
- typo-mini: Typographic-synth's clean set (the same classes, some with their name written);
- efficientnet-lite0: the photographs bundled with scikit-image, several crops of each;
- any model: a folder of images (`--reference DIR`).

`store_reference_patches` computes the top patches of every circuit neuron of a stored run over
the set (`ingest.thumbnails.neuron_patches`, with where each fires) and stores them with the run
(`catalog.media`, table `neuron_reference_patch`), the set as the concept `reference:MODEL`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from catalog.errors import CircuitsError
from ingest.images import ImageSet, read_image_dir, rendered_image_set
from ingest.thumbnails import ThumbnailConfig

if TYPE_CHECKING:
    from ingest.run_media import RunModel

__all__ = ["PHOTOS", "ReferenceError", "reference_set", "store_reference_patches"]

Progress = Callable[[str, int, int], None]

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "stereo_motorcycle", "hubble_deep_field")
"""scikit-image's bundled photographs (in its wheel: nothing is downloaded)."""


class ReferenceError(CircuitsError):
    """A model has no reference set, or the one given cannot be read."""


def _concat(name: str, sets: list[ImageSet]) -> ImageSet:
    return ImageSet(
        name,
        tuple(im for s in sets for im in s.images),
        tuple(h for s in sets for h in s.sha256s),
        tuple(src for s in sets for src in s.sources),
    )


def reference_set(model: str, folder: str | Path | None = None, *, per_class: int = 4, seed: int = 0) -> ImageSet:
    """The reference image set of a model (or of a folder).

    Args:
        model: a zoo name; only catfish-mini, typo-mini and efficientnet-lite0 have a built-in set.
        folder: a folder of images instead (any model).
        per_class: images per class (CatFish, Typographic) or crops per photograph.
        seed: the rendering / crop seed.

    Raises:
        ReferenceError: no built-in set for the model and no folder.
        ImageSetError: the folder is missing or has no readable image.
    """
    if folder is not None:
        return read_image_dir(folder)
    if model == "catfish-mini":
        from ingest.datasets import catfish

        sets = [
            rendered_image_set(f"catfish:{c}#seed={seed}", catfish.render_concept(c, per_class, seed=seed))
            for c in catfish.CLASS_NAMES
        ]
        return _concat(f"catfish:reference#seed={seed}", sets)
    if model == "typo-mini":
        from ingest.datasets.typo_sets import typo_image_set

        return typo_image_set("typo:clean", 12 * per_class, seed=seed)
    if model == "efficientnet-lite0":
        from ingest.walkthrough import photo, views

        sets = [
            rendered_image_set(f"skimage:{p}#views={per_class},seed={seed}", views(photo(p), per_class, seed=seed))
            for p in PHOTOS
        ]
        return _concat(f"skimage:reference#views={per_class},seed={seed}", sets)
    raise ReferenceError(f"model {model} has no built-in reference set: pass a folder of images as `folder=`")


def store_reference_patches(
    cat,
    run_model: RunModel,
    images: ImageSet,
    *,
    config: ThumbnailConfig | None = None,
    progress: Progress | None = None,
) -> int:
    """Top patches of every circuit neuron of a stored run over a reference set, stored with the run
    (the set as the concept `reference:MODEL`).

    Args:
        cat: an open, writable catalog.
        run_model: the run and its model (`ingest.run_media.load_run_model`).
        images: the reference set (`reference_set`).
        config, progress: as for `ingest.run_media.recompute_run_thumbnails`.

    Returns:
        The number of patches written (the run's old reference patches are replaced).
    """
    from ingest.run_media import store_patches

    written, _ = store_patches(cat, run_model, images.images, reference_set=images, config=config, progress=progress)
    return written
