"""The ingest pipeline: model × concept images → CLA matrices → circuit → catalog rows.

Computation happens before the catalog is opened for writing; then the model, concept, images,
run, all edges and the circuit are written in one transaction. A crash or Ctrl-C at any moment
leaves either the whole run or none of it (plus, where possible, a `failed` run row saying what
happened). The same model weights, layers, image set and CLA parameters are recognised by their
provenance key and not recomputed unless `force` is set.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from catalog import store
from catalog.engine import Catalog
from catalog.errors import CircuitsError
from catalog.models import utcnow
from ingest.images import ImageSet, read_image_dir, rendered_image_set

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


@dataclass(frozen=True)
class IngestResult:
    run_id: int
    circuit_id: int
    reused: bool  # True when an identical complete run already existed
    n_images: int
    skipped: tuple[tuple[str, str], ...] = field(default=())
    seconds: float = 0.0
    channels: tuple[tuple[int, ...], ...] = ()


def resolve_images(images: str | None, dataset: str | None, *, n: int = 32, seed: int = 0) -> ImageSet:
    """Turn `--images DIR` or `--dataset catfish:NAME` into an ImageSet.

    Raises:
        IngestError: neither or both given, or an unknown dataset.
    """
    if (images is None) == (dataset is None):
        raise IngestError("give exactly one of --images DIR or --dataset catfish:NAME")
    if images is not None:
        return read_image_dir(images)
    assert dataset is not None
    kind, _, name = dataset.partition(":")
    if kind != "catfish" or not name:
        raise IngestError(f"unknown dataset {dataset!r}: use catfish:NAME (see `circuits ingest --help`)")
    from ingest.datasets import catfish

    pixels = catfish.render_concept(name, n, seed=seed)
    labels = None
    if name in catfish.CLASS_NAMES:
        labels = np.full(len(pixels), catfish.CLASS_NAMES.index(name), dtype=np.int64)
    return rendered_image_set(f"catfish:{name}#seed={seed}", pixels, labels)


def library_versions() -> dict[str, str]:
    import torch
    import torchvision

    from importlib.metadata import version

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


def ingest(
    cat: Catalog,
    config: IngestConfig,
    image_set: ImageSet,
    *,
    progress: Progress | None = None,
) -> IngestResult:
    """Run CLA for one model × concept and store the run and its circuit.

    Args:
        cat: an open, writable catalog.
        config: what to run.
        image_set: the concept's example images.
        progress: optional callback (stage, done, total) for progress bars.

    Returns:
        The stored (or reused) run and its new circuit.

    Raises:
        IngestError, UnknownModel, UnknownLayer, ImageSetError: bad input, before anything is written.
    """
    from ingest import zoo
    from ingest.cla.attribute import attribute
    from ingest.cla.capture import layer_widths
    from ingest.cla.search import find_circuit
    from ingest.hooks import resolve_device

    t0 = time.perf_counter()
    loaded = zoo.load_model(config.model, weights=config.weights, layers=config.layers)
    layers = list(loaded.layers)
    if len(layers) < 2:
        raise IngestError("CLA needs at least two layers: pass --layers A,B[,…]")
    x = zoo.preprocess(loaded.spec, list(image_set.images))  # (N, 3, H, W)
    # Register the adapter's whole layer list when the run uses a subset of it, so layer positions
    # in the catalog are forward order whatever the first run's choice was.
    catalogued = list(loaded.spec.layers) if set(layers) <= set(loaded.spec.layers) else layers
    all_widths = dict(zip(catalogued, layer_widths(loaded.module, catalogued, tuple(x.shape[1:]))))
    widths = [all_widths[name] for name in layers]
    ks = _k_per_layer(config.k, layers, widths)
    params = {"method": CLA_METHOD, "input_size": int(x.shape[-1])}
    key = provenance_key(loaded.weights_sha256, layers, image_set.sha256, params)

    with cat.session() as s:
        existing = None if config.force else store.find_complete_run(s, key)
    if existing is not None:
        with cat.session() as s:
            same = [c for c in store.list_circuits(s, run_id=existing.id) if list(c.k) == ks and not c.fixed]
        if same:
            channels = tuple(tuple(c) for c in same[0].channels)
            circuit_id = same[0].id
        else:
            circuit_id, circuit = refine(cat, existing.id, ks, max_sweeps=config.max_sweeps)
            channels = tuple(tuple(c) for c in circuit.channels)
        return IngestResult(
            existing.id, circuit_id, True, len(image_set), image_set.skipped, time.perf_counter() - t0, channels
        )

    resolved_device = str(resolve_device(config.device))  # the device the run row records
    on_batch = None if progress is None else (lambda done, total: progress("attribution", done, total))
    run_fields = dict(
        layer_names=layers,
        params=params,
        image_set_sha256=image_set.sha256,
        n_images=len(image_set),
        provenance_key=key,
        library_versions=library_versions(),
        device=resolved_device,
        started_at=utcnow(),
    )
    model_fields = dict(
        name=loaded.spec.name,
        architecture=loaded.spec.architecture,
        weights_sha256=loaded.weights_sha256,
        layers=list(all_widths.items()),
    )
    try:
        matrices = attribute(
            loaded.module, layers, x, batch_size=config.batch_size, device=resolved_device, progress=on_batch
        )
        circuit = find_circuit(matrices, ks, max_sweeps=config.max_sweeps)
        seconds = time.perf_counter() - t0
        from ingest import thumbnails  # the circuit neurons' example patches (catalog.media)

        patches = thumbnails.neuron_patches(loaded.module, layers, x, circuit.channels,
                                            mean=loaded.spec.mean, std=loaded.spec.std, progress=progress)
        thumbs = thumbnails.example_thumbnails(image_set.images)
        if progress is not None:
            progress("writing", 0, 1)
        with cat.session() as s, s.begin():  # one transaction: the whole run or nothing
            model = store.ensure_model(s, **model_fields)
            concept_id = store.ensure_concept(s, config.concept)
            store.write_example_images(
                s, concept_id, image_set.sha256, list(zip(image_set.sha256s, image_set.sources))
            )
            run_id = store.write_run(
                s, model=model, concept_id=concept_id, matrices=matrices, seconds=seconds, **run_fields
            )
            circuit_id = store.write_circuit(
                s,
                run_id=run_id,
                channels=circuit.channels,
                k=ks,
                fixed=None,
                sweeps=circuit.sweeps,
                converged=circuit.converged,
                objective_history=circuit.objective_history,
            )
            thumbnails.store_thumbnails(s, run_id=run_id, model_id=model.id, concept_id=concept_id,
                                        image_set_sha256=image_set.sha256, patches=patches, thumbnails=thumbs)
    except (Exception, KeyboardInterrupt) as exc:
        _record_failure(cat, model_fields, config.concept, run_fields, time.perf_counter() - t0, exc)
        raise
    if progress is not None:
        progress("writing", 1, 1)
    return IngestResult(
        run_id, circuit_id, False, len(image_set), image_set.skipped, seconds,
        tuple(tuple(c) for c in circuit.channels),
    )


def _record_failure(cat: Catalog, model_fields: dict, concept: str, run_fields: dict, seconds: float,
                    exc: BaseException) -> None:
    """Leave a `failed` run row saying what happened; never masks the original error."""
    error = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
    try:
        with cat.session() as s, s.begin():
            model = store.ensure_model(s, **model_fields)
            concept_id = store.ensure_concept(s, concept)
            store.record_failed_run(
                s, model=model, concept_id=concept_id, seconds=seconds, error=error[:2000], **run_fields
            )
    except Exception:  # the catalog itself may be what failed; the original error is what matters
        pass


def refine(cat: Catalog, run_id: int, k: int | Sequence[int], *,
           fixed: Mapping[str | int, Sequence[int]] | None = None, max_sweeps: int = 50):
    """Make a new circuit of another k from a run's stored edges alone (no model, no GPU).

    Args:
        cat: an open, writable catalog.
        run_id: a complete run.
        k: neurons per layer: one int, or one per layer of the run.
        fixed: anchored layers, layer name -> channels held fixed there (a layer index, negative
            from the end, is accepted too). Stored in the circuit's `fixed` keyed by layer name.
        max_sweeps: the most refinement sweeps.

    Returns:
        (circuit_id, Circuit).

    Raises:
        IngestError: a bad k, or a fixed layer that is not one of the run's layers.
    """
    from ingest.cla.search import find_circuit

    with cat.session() as s:
        run = store.read_run(s, run_id)
        matrices = store.read_run_matrices(s, run_id)
    ks = _k_per_layer(k, run.layer_names, run.widths)
    by_index = None if fixed is None else _fixed_by_index(fixed, list(run.layer_names))
    circuit = find_circuit(matrices, ks, fixed=by_index, max_sweeps=max_sweeps)
    with cat.session() as s, s.begin():
        circuit_id = store.write_circuit(
            s,
            run_id=run_id,
            channels=circuit.channels,
            k=circuit.k,  # a fixed layer's k is its anchor count
            fixed=None if by_index is None else {run.layer_names[i]: list(c) for i, c in by_index.items()},
            sweeps=circuit.sweeps,
            converged=circuit.converged,
            objective_history=circuit.objective_history,
        )
    return circuit_id, circuit


def _fixed_by_index(fixed: Mapping[str | int, Sequence[int]], layer_names: list[str]) -> dict[int, list[int]]:
    """Anchors keyed by layer name (or index) -> keyed by the layer's index, as the search takes them."""
    out: dict[int, list[int]] = {}
    for key, chans in fixed.items():
        if isinstance(key, str):
            if key not in layer_names:
                raise IngestError(f"fixed layer {key!r} is not a layer of this run: use one of {', '.join(layer_names)}")
            i = layer_names.index(key)
        else:
            i = int(key) + (len(layer_names) if int(key) < 0 else 0)
            if not 0 <= i < len(layer_names):
                raise IngestError(f"fixed layer index {key} is out of range for {len(layer_names)} layers")
        if i in out:
            raise IngestError(f"layer {layer_names[i]!r} is fixed twice")
        out[i] = [int(c) for c in chans]
    return out
