"""Neuron media of a stored run, recomputed later: `circuits thumbnails RUN MODEL`.

`load_run_model` loads the model a run was computed with (refusing other or missing weights by
their sha256) with the preprocessing the run recorded, once for every kind of media:

    run = load_run_model(cat, run_id, "catfish-mini")
    recompute_run_thumbnails(cat, run)                                 # the run's own images
    store_reference_patches(cat, run, reference_set("catfish-mini"))  # ingest.reference
    recompute_run_featurevis(cat, run)                                 # ingest.featurevis

`recompute_run_thumbnails` reads the run's images again (re-rendered for CatFish sets, else from
their recorded sources, each checked against its sha256) and stores fresh patches, heat-maps and
thumbnails (`ingest.thumbnails`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from catalog import media
from catalog.image_set_names import parse_image_set_name
from ingest.thumbnails import (
    Progress,
    ThumbnailConfig,
    ThumbnailError,
    example_thumbnails,
    neuron_patches,
    store_thumbnails,
)

if TYPE_CHECKING:
    from catalog.refs import RunRef
    from ingest.images import ImageSet
    from ingest.zoo import LoadedModel
    from ingest.zoo.preprocessing import Preprocessing

__all__ = ["RunModel", "load_run_model", "recompute_run_thumbnails", "store_patches"]


@dataclass(frozen=True)
class RunModel:
    """A stored run with its model loaded as the run used it: what its neuron media are made from.

    Attributes:
        run: the run.
        channels: per run layer, the sorted channels of any of its circuits.
        loaded: the model, with the run's weights (their sha256 checked), on the device asked for.
        preprocessing: the preprocessing the run recorded (the model's own for older runs).
    """

    run: RunRef
    channels: list[list[int]]
    loaded: LoadedModel
    preprocessing: Preprocessing

    @property
    def module(self) -> Any:
        """The `nn.Module`."""
        return self.loaded.module


def _images_of_run(sources: Sequence[str], sha256s: Sequence[str]) -> list[np.ndarray]:
    """Read a stored image set again from its recorded sources and check each sha256."""
    import hashlib

    rendered: dict[tuple[str, int], np.ndarray] = {}
    images = []
    for i, (source, sha) in enumerate(zip(sources, sha256s)):
        m = parse_image_set_name(source)
        if m.kind == "catfish" and m.seed is not None and m.index is not None and not m.options:
            from ingest.datasets import catfish

            key = (m.name, m.seed)
            if key not in rendered:
                rendered[key] = catfish.render_concept(key[0], len(sources), seed=key[1])
            pixels = rendered[key][m.index]
            digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
        else:
            try:
                data = open(source, "rb").read()
            except OSError as exc:
                raise ThumbnailError(
                    f"example image {source} cannot be read ({exc.strerror}): thumbnails need the run's "
                    "images where they were at ingest"
                ) from exc
            digest = hashlib.sha256(data).hexdigest()
            with Image.open(io.BytesIO(data)) as im:
                pixels = np.asarray(im.convert("RGB"), dtype=np.uint8)
        if digest != sha:
            raise ThumbnailError(f"example image {i} ({source}) has changed since the run: its sha256 differs")
        images.append(pixels)
    return images


def _model_of(run, model: str, weights: str | None):
    """The model of a stored run with the preprocessing the run used: (LoadedModel, Preprocessing).

    Raises:
        ThumbnailError: the run is not complete, or the weights are missing or not the run's
        (their sha256 differs: a missing file loads random-init weights, which differ too).
    """
    from ingest import zoo
    from ingest.zoo.preprocessing import Preprocessing

    if run.status != "complete":
        raise ThumbnailError(f"run {run.id} is {run.status}, not complete: ingest it again")
    loaded = zoo.load_model(model, weights=weights, layers=list(run.layer_names))
    if loaded.weights_sha256 != run.weights_sha256:
        raise ThumbnailError(
            f"run {run.id} was computed with weights {run.weights_sha256[:12]}, but {model} loaded "
            f"{loaded.weights_sha256[:12]} ({loaded.weights_source}): pass the run's weights with `weights=`"
        )
    stored = run.params.get("preprocessing") if isinstance(run.params, dict) else None
    pp = Preprocessing.from_params(stored) if stored is not None else loaded.spec.pp
    return loaded, pp


def load_run_model(cat, run_id: int, model: str, *, weights: str | None = None, device: str = "cpu") -> RunModel:
    """A stored run, its circuits' channels and its model, for computing neuron media.

    Args:
        cat: an open catalog.
        run_id: a complete run.
        model: the model name (as for ingest); its weights must hash to the run's model.
        weights: local weights file, as for ingest.
        device: where to run the model.

    Raises:
        NotFound: no such run. ThumbnailError: the run is not complete, or the weights are
        missing or other than the run's (their sha256 differs).
    """
    from catalog import store

    with cat.reading() as s:  # loading the model can take a while: hold nothing meanwhile
        run = store.read_run(s, run_id)
        circuits = store.find_circuits(s, run_id=run_id)
    loaded, pp = _model_of(run, model, weights)
    loaded.module.to(device)
    channels = [sorted({c for k in circuits for c in k.channels[i]}) for i in range(len(run.layer_names))]
    return RunModel(run, channels, loaded, pp)


def recompute_run_thumbnails(
    cat, run_model: RunModel, *, config: ThumbnailConfig | None = None, progress: Progress | None = None
) -> tuple[int, int]:
    """Compute and store the thumbnails of a stored run (all neurons of all its circuits).

    Args:
        cat: an open, writable catalog.
        run_model: the run and its model (`load_run_model`).
        config: how many patches and how large (None: `ThumbnailConfig()`).
        progress: optional callback (stage, done, total).

    Returns:
        (patches written, thumbnails written now).

    Raises:
        ThumbnailError: the images cannot be read again.
    """
    run = run_model.run
    with cat.reading() as s:
        sources = media.image_set_sources(s, run.concept_id, run.image_set_sha256)
    images = _images_of_run([src for src, _ in sources], [sha for _, sha in sources])
    return store_patches(cat, run_model, images, config=config, progress=progress)


def store_patches(
    cat,
    run_model: RunModel,
    images: Sequence[np.ndarray],
    *,
    reference_set: ImageSet | None = None,
    config: ThumbnailConfig | None = None,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Compute the top patches of every circuit neuron of a run over `images` (RGB uint8) and store
    them, replacing the old ones, with the images' thumbnails, in one transaction.

    Args:
        images: the run's own example images, or the images of `reference_set`.
        reference_set: a reference set (`ingest.reference`): its patches are the run's reference
            patches and the set is stored as the concept `reference:MODEL`. None: the run's own.

    Returns:
        (patches written, thumbnails written now).
    """
    from catalog import store
    from ingest import zoo

    config = config or ThumbnailConfig()
    run, pp = run_model.run, run_model.preprocessing
    x = zoo.preprocess(pp, list(images))  # the model's inputs, as the run made them
    patches = neuron_patches(
        run_model.module,
        list(run.layer_names),
        x,
        run_model.channels,
        mean=pp.mean,
        std=pp.std,
        config=config,
        progress=progress,
    )
    thumbs = example_thumbnails(list(images), config.image_size)
    with cat.writing() as s:
        concept_id, image_set_sha256 = run.concept_id, run.image_set_sha256
        if reference_set is not None:
            concept_id = store.ensure_concept(s, f"reference:{run.model}", f"reference image set of {run.model}")
            pairs = list(zip(reference_set.sha256s, reference_set.sources))
            store.write_example_images(s, concept_id, reference_set.sha256, pairs)
            image_set_sha256 = reference_set.sha256
        return store_thumbnails(
            s,
            run_id=run.id,
            model_id=run.model_id,
            concept_id=concept_id,
            image_set_sha256=image_set_sha256,
            patches=patches,
            thumbnails=thumbs,
            reference=reference_set is not None,
        )
