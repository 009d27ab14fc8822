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

from catalog import store
from catalog.errors import CircuitsError
from ingest.images import ImageSet, read_image_dir, rendered_image_set
from ingest.thumbnails import ThumbnailConfig, example_thumbnails, neuron_patches, store_thumbnails

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
    run_id: int,
    model: str,
    images: ImageSet,
    *,
    weights: str | None = None,
    device: str = "cpu",
    config: ThumbnailConfig | None = None,
    progress: Progress | None = None,
) -> int:
    """Top patches of every circuit neuron of a stored run over a reference set, stored with the run.

    Returns:
        The number of patches written (the run's old reference patches are replaced).

    Raises:
        NotFound: no such run. ThumbnailError: other or missing weights (sha256).
    """
    from ingest import zoo
    from ingest.run_media import load_run_circuits

    config = config or ThumbnailConfig()
    run, channels, loaded, pp = load_run_circuits(cat, run_id, model, weights, device)
    x = zoo.preprocess(pp, list(images.images))
    layers = list(run.layer_names)
    patches = neuron_patches(
        loaded.module, layers, x, channels, mean=pp.mean, std=pp.std, config=config, progress=progress
    )
    thumbs = example_thumbnails(list(images.images), config.image_size)
    with cat.session() as s, s.begin():
        concept_id = store.ensure_concept(s, f"reference:{run.model}", f"reference image set of {run.model}")
        store.write_example_images(s, concept_id, images.sha256, list(zip(images.sha256s, images.sources)))
        written, _ = store_thumbnails(
            s,
            run_id=run_id,
            model_id=run.model_id,
            concept_id=concept_id,
            image_set_sha256=images.sha256,
            patches=patches,
            thumbnails=thumbs,
            reference=True,
        )
    return written
