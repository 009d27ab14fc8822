"""Run an intervention on a stored circuit and store its evaluation beside a random baseline.

Labelled image sets store `accuracy`, `true_prob` and `kl`; unlabelled ones are measured against
the clean model's top-1. Typographic-attack sets (`typo:attack…`, `AttackImageSet`s) store
`attack_success` (share classified as the *written* class), `attack_accuracy` (share still
classified as the true class, when the true class is known) and `kl`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from catalog import store
from catalog.engine import Catalog
from ingest.images import ImageSet
from ingest.pipeline import IngestError
from ingest.stored_model import model_to_rebuild

if TYPE_CHECKING:
    from ingest.zoo.preprocessing import Preprocessing

METRICS = ("accuracy", "true_prob", "kl")
ATTACK_METRICS = ("attack_success", "attack_accuracy", "kl")
# Images without class labels (a primitive alone, a folder without --label) are measured against
# the clean model's own top-1: how often pruning keeps it, and that class's probability.
UNLABELLED_NAMES = {"accuracy": "agreement", "true_prob": "clean_top1_prob", "kl": "kl"}


@dataclass(frozen=True)
class AblationResult:
    intervention_id: int
    circuit_id: int
    kind: str
    image_set: str
    n_images: int
    edge_fraction: float
    baseline_edge_fraction: float
    clean: dict[str, float]
    intervened: dict[str, float]
    baseline: dict[str, float]
    reused: bool = False  # True when the same evaluation was already stored
    warnings: tuple[str, ...] = ()  # e.g. the pruned neurons include the output layer's logits


def pruned_neurons(circ, prune_anchor: bool = False) -> tuple[list[str], list[list[int]]]:
    """The layers and channels `ablate` prunes: the circuit less its anchored (fixed) neurons.

    Pruning a class circuit's anchor logit would measure nothing but the zeroed logit itself, so
    anchors are kept unless `prune_anchor`. Every circuit layer stays listed (an anchor-only layer
    with no channel), so the share of edges cut is still taken over the circuit's layers.

    Raises:
        IngestError: nothing is left to prune.
    """
    fixed = {} if prune_anchor else {k: set(map(int, v)) for k, v in (circ.fixed or {}).items()}
    layers, channels = list(circ.layer_names), []
    for layer, chans in zip(circ.layer_names, circ.channels):
        channels.append([int(c) for c in chans if int(c) not in fixed.get(layer, set())])
    if not any(channels):
        raise IngestError(f"circuit {circ.id} has only anchored neurons: pass `prune_anchor=` to prune them")
    return layers, channels


def logit_warning(
    model, layers: Sequence[str], channels: Sequence[Sequence[int]], x, name: str = "the model"
) -> str | None:
    """A warning when the pruned neurons include the model's output logits (its last layer).

    Raises:
        IngestError: the model's forward does not return logits (a (B, classes) tensor).
    """
    from ingest.anchor import output_module
    from ingest.user_code import forward_time_limit, user_model_error

    param = next(model.parameters(), None)
    try:
        with forward_time_limit("the model's forward pass on one image"):
            path, out = output_module(model, x[:1] if param is None else x[:1].to(param.device))
    except Exception as exc:
        err = user_model_error(exc, "its forward pass on one image (before anything was written)")
        if err is None:
            raise
        raise err from exc
    if not hasattr(out, "dim") or out.dim() != 2:
        shape = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
        raise IngestError(
            f"{name} returns {shape} from its forward, not class logits (B, classes): `ablate` measures "
            "class outputs, so the model must return one tensor of logits"
        )
    chans = channels[list(layers).index(path)] if path is not None and path in layers else []
    if not chans:
        return None
    return (
        f"the pruned neurons include {len(chans)} of the output layer's logits ({path}: "
        f"{', '.join(map(str, list(chans)[:5]))}{'…' if len(chans) > 5 else ''}): the effect on those classes "
        "is the zeroed logit itself, not the circuit (anchor the circuit with `circuits ingest … --anchor CLASS`)"
    )


def labels_for(image_set: ImageSet, label: str | None, class_names: Sequence[str] | None) -> np.ndarray | None:
    """The true class of every image: from a rendered class set, `--label NAME` for a folder, or
    None when the images have no class (they are then measured against the clean top-1)."""
    if label is not None:
        if not class_names:
            raise IngestError(
                "this model has no class names, so `label=` cannot be resolved: give `class_names=` "
                "(one name per logit index) or declare class_names on the model's factory"
            )
        if label not in class_names:
            close = ", ".join(n for n in class_names if label.lower() in n.lower())[:200]
            raise IngestError(f"unknown class {label!r} for `label=`" + (f" (did you mean: {close})" if close else ""))
        return np.full(len(image_set), list(class_names).index(label), dtype=np.int64)
    if image_set.labels is None:
        return None
    return np.asarray(image_set.labels, dtype=np.int64)


def ablate(
    cat: Catalog,
    circuit_id: int,
    image_set: ImageSet,
    *,
    kind: str = "circuit",
    label: str | None = None,
    weights: str | None = None,
    pair: int = 0,
    baseline_seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    model_cache: dict | None = None,
    force: bool = False,
    model: Any = None,
    preprocessing: Preprocessing | None = None,
    class_names: Sequence[str] | None = None,
    threads: int | None = None,
    prune_anchor: bool = False,
) -> AblationResult:
    """Prune a stored circuit, evaluate it and a random circuit of the same shape, store both.

    The images are fed as the circuit's run fed its images (the preprocessing stored in the run's
    provenance) unless `preprocessing` is given. Class names for `label` come from
    `class_names`, else the model's spec (zoo models, user factories that declare them).

    Args:
        cat: an open, writable catalog.
        circuit_id: the circuit to prune.
        image_set: the images to evaluate on.
        model: the network: the `torch.nn.Module` the circuit was found on (its weights must
            match the stored sha256), or a user factory string `path/file.py:factory`; None for
            a zoo model (rebuilt by name). A catalog's stored model code is never run.
        weights: a weights file for a named model.
        threads: torch CPU threads, set for the process when given; None leaves them alone.
        model_cache: `(model name, weights, layers) -> LoadedModel`, reused across calls; a caller
            may put a model there that the zoo cannot build (e.g. a zero-shot CLIP classifier).
        prune_anchor: prune the circuit's anchored (fixed) neurons too (`pruned_neurons`).

    Raises:
        IngestError: the model's weights differ from those the circuit was found with, or the
            images have no labels.
        AttackLabelsMissing: an attack set that does not record the written class per image.
        UntrustedModel: the circuit's model is a user model and `model` does not name it
            (`ingest.stored_model`: a catalog's model code is never imported).
    """
    from ingest import zoo
    from ingest.datasets.typo_sets import is_attack_set, require_written
    from ingest.edit.interventions import evaluate
    from ingest.module_model import is_module, loaded_module
    from ingest.refinement import stored_preprocessing
    from ingest.zoo.preprocessing import Preprocessing

    if threads is not None:
        from ingest.threads import configure

        configure(threads)
    if kind not in ("circuit", "edge"):
        raise IngestError(f"unknown intervention kind {kind!r}: use `kind=` circuit or edge")
    written = require_written(image_set) if is_attack_set(image_set) else None
    with cat.reading() as s:  # loading the model can take a while: hold nothing meanwhile
        circ = store.read_circuit(s, circuit_id)
        run_params = store.read_run(s, circ.run_id).params
    if is_module(model):
        loaded = loaded_module(
            model, layers=circ.layer_names, preprocessing=stored_preprocessing(run_params, Preprocessing)
        )
        fix = "pass the module with the weights the circuit was found with"
    else:
        name = model_to_rebuild(circ.model, model, what=f"circuit {circuit_id}")
        key = (name, weights, tuple(circ.layer_names))
        cached = None if model_cache is None else model_cache.get(key)
        if cached is None:
            cached = zoo.load_model(name, weights=weights, layers=circ.layer_names)
            if model_cache is not None:
                model_cache[key] = cached
        loaded = cached
        fix = "pass the same file with `weights=`"
    if loaded.weights_sha256 != circ.weights_sha256:
        raise IngestError(
            f"circuit {circuit_id} was found on {circ.model} weights {circ.weights_sha256[:12]}…, "
            f"but the given weights are {loaded.weights_sha256[:12]}… ({loaded.weights_source}): {fix}"
        )
    pp = preprocessing or stored_preprocessing(run_params, lambda: loaded.spec.pp)
    labels = labels_for(image_set, label, class_names or loaded.spec.labels)
    names = {m: m for m in METRICS} if labels is not None else UNLABELLED_NAMES
    if written is not None:
        _check_attack_classes(image_set, class_names or loaded.spec.labels)
        names = {m: m for m in ATTACK_METRICS if labels is not None or m != "attack_accuracy"}
    params = {
        "pair": pair,
        "baseline_seed": baseline_seed,
        "weights_sha256": loaded.weights_sha256,
        "preprocessing": pp.to_params(),
    }
    prune_layers, prune_channels = pruned_neurons(circ, prune_anchor)
    if circ.fixed:  # which neurons were pruned is part of what was measured
        params["anchor"] = "pruned" if prune_anchor else "kept"
    warning = logit_warning(loaded.module, prune_layers, prune_channels, pp.example(1, size=64), loaded.spec.name)
    if not force:
        with cat.reading() as s:  # and let go: other processes may read the file while this evaluates
            stored = _stored(store.list_interventions(s, circuit_id), kind, params, image_set.sha256, names)
        if stored is not None:
            import dataclasses

            return dataclasses.replace(stored, warnings=(warning,) if warning else ())
    x = zoo.preprocess(pp, list(image_set.images))
    import torch

    # what both evaluations take: which neurons, how they are cut, the baseline and the batching
    how: dict[str, Any] = dict(
        layers=prune_layers,
        kind=kind,
        pair=pair,
        baseline_seed=baseline_seed,
        batch_size=batch_size,
        device=device,
    )
    if written is not None:
        from ingest.defence.attack_eval import evaluate_attack

        attack = evaluate_attack(loaded.module, prune_channels, x, written, labels, **how)
        clean, inter, base = attack.clean, attack.intervened, attack.baseline
        fractions = (attack.edge_fraction, attack.baseline_edge_fraction)
    else:
        if labels is None:
            labels = _clean_top1(loaded.module, x, batch_size, device)
        result = evaluate(loaded.module, prune_channels, x, torch.as_tensor(labels), **how)
        clean = {names[m]: float(getattr(result.clean, m)) for m in METRICS}
        inter = {names[m]: float(getattr(result.intervened, m)) for m in METRICS}
        base = {names[m]: float(getattr(result.baseline, m)) for m in METRICS}
        fractions = (float(result.edge_fraction), float(result.baseline_edge_fraction))
    return _write(cat, circuit_id, kind, params, image_set, clean, inter, base, *fractions, warning)


def _check_attack_classes(image_set: ImageSet, model_labels: Sequence[str] | None) -> None:
    """The written classes index the model's outputs: the class lists must be the same."""
    names = tuple(getattr(image_set, "class_names", ()) or ())
    if model_labels is not None and names and tuple(model_labels) != names:
        raise IngestError(
            f"attack set {image_set.name} writes classes {', '.join(names[:4])}… but the model's classes are "
            f"{', '.join(list(model_labels)[:4])}…: make the attacks with the model's class names"
        )


def _write(
    cat: Catalog,
    circuit_id: int,
    kind: str,
    params: dict,
    image_set: ImageSet,
    clean: dict,
    inter: dict,
    base: dict,
    edge_fraction: float,
    baseline_edge_fraction: float,
    warning: str | None = None,
) -> AblationResult:
    """Store one intervention and its evaluation rows (one transaction); return it."""
    rows = [
        store.EvaluationRow(
            image_set=image_set.name,
            image_set_sha256=image_set.sha256,
            n_images=len(image_set),
            metric=m,
            clean_value=clean[m],
            value=inter[m],
            baseline_value=base[m],
        )
        for m in clean
    ]
    with cat.writing() as s:  # one short transaction (waits while another process writes)
        intervention_id = store.write_intervention(
            s,
            circuit_id=circuit_id,
            kind=kind,
            params=params,
            edge_fraction=float(edge_fraction),
            baseline_edge_fraction=float(baseline_edge_fraction),
            evaluations=rows,
        )
    return AblationResult(
        intervention_id,
        circuit_id,
        kind,
        image_set.name,
        len(image_set),
        float(edge_fraction),
        float(baseline_edge_fraction),
        clean,
        inter,
        base,
        reused=False,
        warnings=(warning,) if warning else (),
    )


def _clean_top1(model, x, batch_size: int, device: str):
    """The clean model's top-1 class of every image: the reference for unlabelled images."""
    import torch

    from ingest.cla.attribution import resolve_device

    dev = resolve_device(device)
    model.to(dev)
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


def _stored(interventions, kind: str, params: dict, image_set_sha256: str, names: dict) -> AblationResult | None:
    """The stored evaluation of the same intervention on the same images, if any."""
    wanted = set(names.values())
    for iv in interventions:
        rows = [e for e in iv.evaluations if e.image_set_sha256 == image_set_sha256 and e.metric in wanted]
        if iv.kind != kind or iv.params != params or {e.metric for e in rows} != wanted:
            continue
        by = {e.metric: e for e in rows}
        return AblationResult(
            iv.id,
            iv.circuit_id,
            kind,
            rows[0].image_set,
            rows[0].n_images,
            iv.edge_fraction,
            float(iv.baseline_edge_fraction or 0.0),
            {m: float(by[m].clean_value) for m in by},
            {m: float(by[m].value) for m in by},
            {m: float(by[m].baseline_value) for m in by},
            reused=True,
        )
    return None
