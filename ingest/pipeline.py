"""The ingest pipeline: model × concept images → CLA matrices → circuit → catalog rows.

Four steps, usable one by one (`ingest.fanout.many` runs them in worker processes): `prepare` loads the
model and works out the run's provenance key; `stored_circuit` asks the catalog whether that run
is stored (the same weights, layers, image set and CLA parameters are not recomputed unless
`force` is set); `compute` runs CLA and the circuit search without the catalog; and
`ingest.writer.store_computed` writes model, concept, images, run, edges and circuit in one short
transaction. The catalog is held only to read and to write, never during the computation, so a
DuckDB file stays readable by other processes meanwhile. A crash or Ctrl-C at any moment leaves
either the whole run or none of it (plus, where possible, a `failed` run row saying what happened).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from catalog import store
from catalog.engine import Catalog
from catalog.errors import CircuitsError
from catalog.models import utcnow
from catalog.names import check_concept_name
from ingest.images import ImageSet, read_image_dir, rendered_image_set
from ingest.preflight import check_ingest_inputs

if TYPE_CHECKING:  # torch stays unimported until a run needs it
    from ingest.zoo.preprocessing import Preprocessing

CLA_METHOD = "cla-v1"  # bump when the score's arithmetic changes: old runs stop matching

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class IngestError(CircuitsError):
    """An ingest request that cannot be carried out as given."""


@dataclass(frozen=True)
class IngestConfig:
    """What to ingest. Defaults are the ones `circuits ingest` uses."""

    model: str
    concept: str
    layers: tuple[str, ...] | None = None  # None: the adapter's default CLA layers
    k: int | tuple[int, ...] = 5  # neurons per layer in the circuit
    weights: str | None = None  # local weights file; None: bundled/cache/random-init
    device: str = "auto"
    batch_size: int = 16  # images per forward pass; memory, not results, depends on it
    max_sweeps: int = 50
    force: bool = False  # recompute even when an identical run exists
    # Preprocessing overrides; None keeps the model's own (a zoo model's published one, a user
    # factory's declared one, or none at all: [0, 1] RGB at the images' own size).
    input_size: int | str | None = None  # pixels, or "keep" for each image's own size
    resize: str | None = None  # "crop" (shorter side, centre) or "stretch"
    normalize: str | tuple[tuple[float, ...], tuple[float, ...]] | None = None  # "none", "imagenet", "M,M,M:S,S,S"
    channels: int | None = None  # 1 (luminance) or 3 (RGB)
    threads: int | None = None  # torch CPU threads, set for the process; None: ingest.threads.default_threads()
    tokens: str = "all"  # token layers: which tokens count, "all", "patches" or "cls" (ingest.cla.tokens)

    def preprocessing_for(self, spec_preprocessing: Preprocessing) -> Preprocessing:
        """The model's preprocessing with this config's overrides applied."""
        return spec_preprocessing.with_overrides(
            input_size=self.input_size, resize=self.resize, normalize=self.normalize, channels=self.channels
        )


@dataclass(frozen=True)
class IngestResult:
    run_id: int
    circuit_id: int
    reused: bool  # True when an identical complete run already existed
    n_images: int
    skipped: tuple[tuple[str, str], ...] = field(default=())
    seconds: float = 0.0
    channels: tuple[tuple[int, ...], ...] = ()
    preprocessing: str = ""  # `Preprocessing.describe()` of the inputs the run used


def resolve_images(
    images: str | None, dataset: str | None, *, n: int = 32, seed: int = 0, recursive: bool = False
) -> ImageSet:
    """Turn `--images DIR` (sub-folders too with `recursive`) or `--dataset catfish:NAME` into an ImageSet.

    Raises:
        IngestError: neither or both given, or an unknown dataset.
    """
    if (images is None) == (dataset is None):
        raise IngestError("give exactly one of --images DIR or --dataset catfish:NAME")
    if images is not None:
        return read_image_dir(images, recursive=recursive)
    assert dataset is not None
    kind, _, name = dataset.partition(":")
    if kind == "typo":  # Typographic-synth: typo:clean[:C], typo:attack[:C], typo:text
        from ingest.datasets.typo_sets import typo_image_set

        return typo_image_set(dataset, n, seed=seed)
    if kind != "catfish" or not name:
        raise IngestError(f"unknown dataset {dataset!r}: use catfish:NAME or typo:SET (see `circuits ingest --help`)")
    from ingest.datasets import catfish

    pixels = catfish.render_concept(name, n, seed=seed)
    labels = None
    if name in catfish.CLASS_NAMES:
        labels = np.full(len(pixels), catfish.CLASS_NAMES.index(name), dtype=np.int64)
    return rendered_image_set(f"catfish:{name}#seed={seed}", pixels, labels)


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    import torch
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "visual-circuit-catalog": version("visual-circuit-catalog"),
    }


def provenance_key(weights_sha256: str, layers: Sequence[str], image_set_sha256: str, params: dict[str, Any]) -> str:
    """The identity of a run's result: same key, same matrices."""
    blob = json.dumps(
        {"weights": weights_sha256, "layers": list(layers), "images": image_set_sha256, "params": params},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _k_per_layer(k: int | Sequence[int], layers: Sequence[str], widths: Sequence[int]) -> list[int]:
    ks = [int(k)] * len(layers) if isinstance(k, int) else [int(x) for x in k]
    if len(ks) != len(layers):
        raise IngestError(f"--k has {len(ks)} values but there are {len(layers)} layers: give one k or one per layer")
    for name, kk, width in zip(layers, ks, widths):
        if kk < 1:
            raise IngestError(f"k must be at least 1 (got {kk} for layer {name})")
        if kk > width:
            raise IngestError(f"k={kk} is larger than layer {name}, which has {width} neurons: choose k ≤ {width}")
    return ks


@dataclass(frozen=True)
class Prepared:
    """An ingest request resolved against its model, before any computation (see `prepare`).

    Attributes:
        config: the request.
        image_set: the concept's images.
        loaded: the loaded model (`ingest.zoo.LoadedModel`).
        x: the preprocessed images (N, C, H, W).
        preprocessing: the preprocessing that made `x` (stored in the run's params).
        layers: the run's layers in forward order.
        ks: circuit neurons per layer.
        provenance_key: the run's identity (`provenance_key`).
        model_fields: `catalog.store.ensure_model` keyword arguments.
        run_fields: `catalog.store.write_run` provenance keyword arguments (no timing yet).
    """

    config: IngestConfig
    image_set: ImageSet
    loaded: Any
    x: Any
    preprocessing: Any  # ingest.zoo.preprocessing.Preprocessing: what made `x`
    layers: list[str]
    ks: list[int]
    provenance_key: str
    model_fields: dict[str, Any]
    run_fields: dict[str, Any]


def prepare(config: IngestConfig, image_set: ImageSet) -> Prepared:
    """Load the model, preprocess the images and work out the run's provenance key (no catalog).

    Raises:
        IngestError, UnknownModel, UnknownLayer, ImageSetError: bad input.
    """
    from ingest import zoo
    from ingest.cla.capture import layer_widths
    from ingest.hooks import resolve_device
    from ingest.threads import configure

    check_concept_name(config.concept)  # before anything: a refused name writes nothing
    configure(config.threads)
    loaded = zoo.load_model(config.model, weights=config.weights, layers=config.layers)
    layers = list(loaded.layers)
    if len(layers) < 2:
        raise IngestError("CLA needs at least two layers: pass --layers A,B[,…]")
    pp = config.preprocessing_for(loaded.spec.pp)
    x = zoo.preprocess(pp, list(image_set.images))  # (N, C, H, W)
    check_ingest_inputs(
        loaded.module, layers, x, batch_size=config.batch_size, device=config.device, tokens=config.tokens
    )
    # Register the adapter's whole layer list when the run uses a subset of it, so layer positions
    # in the catalog are forward order whatever the first run's choice was.
    catalogued = list(loaded.spec.layers) if set(layers) <= set(loaded.spec.layers) else layers
    all_widths = dict(zip(catalogued, layer_widths(loaded.module, catalogued, tuple(x.shape[1:]))))
    widths = [all_widths[name] for name in layers]
    ks = _k_per_layer(config.k, layers, widths)
    # The preprocessing is part of the provenance (and so of the key): other inputs, other scores.
    params = {"method": CLA_METHOD, "input_size": int(x.shape[-1]), "preprocessing": pp.to_params()}
    if config.tokens != "all":  # absent for "all", so keys of runs made before token selection hold
        params["tokens"] = config.tokens
    key = provenance_key(loaded.weights_sha256, layers, image_set.sha256, params)
    run_fields = dict(
        layer_names=layers,
        params=params,
        image_set_sha256=image_set.sha256,
        n_images=len(image_set),
        provenance_key=key,
        library_versions={**library_versions(), "weights_source": loaded.weights_source},  # queries.suggest
        device=str(resolve_device(config.device)),  # the device the run row records
    )
    model_fields = dict(
        name=loaded.spec.name,
        architecture=loaded.spec.architecture,
        weights_sha256=loaded.weights_sha256,
        layers=list(all_widths.items()),
    )
    return Prepared(config, image_set, loaded, x, pp, layers, ks, key, model_fields, run_fields)


def stored_circuit(cat: Catalog, prepared: Prepared) -> tuple[int, int | None] | None:
    """Whether this request's run is stored: (run id, id of its circuit of this k or None), or
    None when it must be computed (or `force` is set). Reads only."""
    if prepared.config.force:
        return None
    with cat.session() as s:
        existing = store.find_complete_run(s, prepared.provenance_key)
        if existing is None:
            return None
        same = [c for c in store.list_circuits(s, run_id=existing.id) if list(c.k) == prepared.ks and not c.fixed]
    return existing.id, (same[0].id if same else None)


def reuse(cat: Catalog, prepared: Prepared, run_id: int, circuit_id: int | None, t0: float) -> IngestResult:
    """The result of a request whose run is stored: its circuit of this k, made from the stored
    edges alone (no model) when it has none yet."""
    from ingest.cla.search import find_circuit
    from ingest.writer import add_circuit_once

    if circuit_id is None:
        with cat.session() as s:
            matrices = store.read_run_matrices(s, run_id)
        cat.release()
        circuit = find_circuit(matrices, prepared.ks, max_sweeps=prepared.config.max_sweeps)
        with cat.writing() as s:  # another process may have added this k meanwhile: then reuse it
            circuit_id, _ = add_circuit_once(s, run_id, prepared.ks, circuit)
    with cat.session() as s:
        channels = tuple(tuple(c) for c in store.read_circuit(s, circuit_id).channels)
    cat.release()
    image_set = prepared.image_set
    return IngestResult(
        run_id,
        circuit_id,
        True,
        len(image_set),
        image_set.skipped,
        time.perf_counter() - t0,
        channels,
        prepared.preprocessing.describe(),
    )


Scores = Callable[["Prepared", "Callable[[int, int], None] | None"], list[np.ndarray]]


def compute(
    prepared: Prepared, *, progress: Progress | None = None, t0: float | None = None, scores: Scores | None = None
):
    """Run CLA, find the circuit and its neurons' thumbnails, without the catalog.

    Args:
        prepared: from `prepare`.
        progress: optional callback (stage, done, total).
        t0: when the request started (`time.perf_counter()`), for the run's duration.
        scores: computes the run's score matrices as `scores(prepared, on_batch)` (None: CLA of
            `prepared.x`, `ingest.cla.attribute`); e.g. a contrast of two image sets.

    Returns:
        An `ingest.writer.ComputedRun` to give to `ingest.writer.store_computed`.

    Raises:
        ComputeFailed: the computation failed (it carries the failed run row to record).
    """
    from ingest import thumbnails
    from ingest.cla.attribute import attribute
    from ingest.cla.search import find_circuit
    from ingest.writer import ComputedRun, RunFailure, describe

    t0 = time.perf_counter() if t0 is None else t0
    run_fields = {**prepared.run_fields, "started_at": utcnow()}
    config, loaded, layers, x = prepared.config, prepared.loaded, prepared.layers, prepared.x
    on_batch = None if progress is None else (lambda done, total: progress("attribution", done, total))
    try:
        if scores is not None:
            matrices = scores(prepared, on_batch)
        else:
            matrices = attribute(
                loaded.module,
                layers,
                x,
                batch_size=config.batch_size,
                device=run_fields["device"],
                progress=on_batch,
                tokens=config.tokens,
            )
        circuit = find_circuit(matrices, prepared.ks, max_sweeps=config.max_sweeps)
        seconds = time.perf_counter() - t0
        patches = thumbnails.neuron_patches(
            loaded.module,
            layers,
            x,
            circuit.channels,
            mean=prepared.preprocessing.mean,
            std=prepared.preprocessing.std,
            progress=progress,
        )
        thumbs = thumbnails.example_thumbnails(prepared.image_set.images)
    except (Exception, KeyboardInterrupt) as exc:
        failure = RunFailure(prepared.model_fields, config.concept, run_fields, time.perf_counter() - t0, describe(exc))
        raise ComputeFailed(failure) from exc
    image_set = prepared.image_set
    return ComputedRun(
        model_fields=prepared.model_fields,
        concept=config.concept,
        run_fields=run_fields,
        images=tuple(zip(image_set.sha256s, image_set.sources)),
        ks=tuple(prepared.ks),
        matrices=tuple(matrices),
        circuit=circuit,
        seconds=seconds,
        force=config.force,
        patches=tuple(patches),
        thumbnails=tuple(thumbs),
        skipped=tuple(image_set.skipped),
    )


class ComputeFailed(Exception):
    """Internal: a computation failed; `failure` is the row to record, `__cause__` the error."""

    def __init__(self, failure: Any):
        super().__init__(failure.error)
        self.failure = failure


def ingest(
    cat: Catalog,
    config: IngestConfig,
    image_set: ImageSet,
    *,
    progress: Progress | None = None,
) -> IngestResult:
    """Run CLA for one model × concept and store the run and its circuit.

    The catalog is read once (is this run stored?), let go during the computation (a DuckDB file
    stays readable by other processes), and written in one short transaction at the end
    (`ingest.writer.store_computed`). When another process stores the same run meanwhile, its run
    is reused.

    Args:
        cat: an open, writable catalog.
        config: what to run.
        image_set: the concept's example images.
        progress: optional callback (stage, done, total) for progress bars.

    Returns:
        The stored (or reused) run and its circuit.

    Raises:
        IngestError, UnknownModel, UnknownLayer, ImageSetError: bad input, before anything is written.
        CatalogLocked: a DuckDB file stayed held by another process at write time.
    """
    t0 = time.perf_counter()
    return ingest_prepared(cat, prepare(config, image_set), progress=progress, t0=t0)


def ingest_prepared(
    cat: Catalog,
    prepared: Prepared,
    *,
    progress: Progress | None = None,
    t0: float | None = None,
    scores: Scores | None = None,
) -> IngestResult:
    """`ingest` from a `prepare`d request: reuse a stored run or compute (`compute`, with `scores`) and store it."""
    from ingest.reuse import run_of_concept
    from ingest.writer import record_failure, store_computed

    t0 = time.perf_counter() if t0 is None else t0
    image_set = prepared.image_set
    found = stored_circuit(cat, prepared)
    cat.release()  # hold nothing while computing
    if found is not None:
        found = run_of_concept(cat, prepared, *found)  # a new concept name is recorded (ingest.reuse)
        return reuse(cat, prepared, found[0], found[1], t0)
    try:
        computed = compute(prepared, progress=progress, t0=t0, scores=scores)
    except ComputeFailed as failed:
        record_failure(cat, failed.failure)
        cause = failed.__cause__
        assert cause is not None, "compute raises ComputeFailed from the error"
        raise cause from None
    if progress is not None:
        progress("writing", 0, 1)
    run_id, circuit_id, reused, channels = store_computed(cat, computed)
    if progress is not None:
        progress("writing", 1, 1)
    return IngestResult(
        run_id,
        circuit_id,
        reused,
        len(image_set),
        image_set.skipped,
        computed.seconds,
        channels,
        prepared.preprocessing.describe(),
    )
