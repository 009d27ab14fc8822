"""The typographic-attack defence: find the text circuit, prune it, measure, recommend (docs/method.md, "Interventions").

`defend(cat, config, target)` runs the whole loop and stores everything it measures:

1. **discover**: CLA on the text concept's images (`target.text_set`, concept `text`) gives one
   text circuit per k in `config.ks` (one CLA run; other k are refined from its stored edges).
   With `target.plain_set` the run is a contrast run (`ingest.defence.contrast`): the edges that
   the written words add to the same images without them;
2. **search** (optional): a beam search over per-layer k on the target's *search* images
   (`ingest.defence.search`), never on the images the sweep reports;
3. **sweep**: every circuit is pruned every way in `config.kinds` (circuit pruning; edge pruning of
   each circuit layer pair) and evaluated, beside `config.n_baselines` seeded random circuits of
   the same shape (mean and spread), on the attack images (`attack_success`, `attack_accuracy`)
   and on each clean class set (`accuracy`), through `ingest.ablation.ablate`, which stores each
   evaluation with the fraction of edges cut;
4. **recommend**: of the rows that lose at most `config.budget` clean accuracy, the one cutting the
   fewest edges among those that divide attack success by `config.target_cut` or more; when none
   does, the one with the lowest attack success (fewest edges on ties), marked as missing the target;
5. **hold out**: the recommended circuit is measured again on the attack and clean images of each
   held-out seed (`target.holdout`), which neither the choice of k nor the recommendation saw.

So that `circuits prune-plan --against text --keep CLASSES` finds the evidence, the attack set is
recorded as an example image set of the concept `text` (its images are images with text on them)
and each clean class set as one of its class's concept.

`typo_target(...)` (`ingest.defence.target`, re-exported here) builds the Typographic-synth
target for typo-mini; `ingest.defence.clip` builds one for a zero-shot CLIP classifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from catalog import store
from catalog.engine import Catalog
from ingest.defence.report import DefenceReport, DefenceRow, recommend
from ingest.defence.target import (  # noqa: F401 (re-exported: callers import them from here)
    CONCEPT_SEED_OFFSET,
    HOLDOUT_SEEDS,
    SEARCH_SEED_OFFSET,
    TEXT_SETS,
    DefenceTarget,
    DefendError,
    check_typo_model,
    typo_target,
)

__all__ = [
    "DEFAULT_KS",
    "HOLDOUT_SEEDS",
    "TEXT_CONCEPT",
    "DefenceReport",
    "DefenceRow",
    "DefenceTarget",
    "DefendConfig",
    "DefendError",
    "check_typo_model",
    "defend",
    "recommend",
    "typo_target",
]

TEXT_CONCEPT = "text"
DEFAULT_KS: tuple[int | tuple[int, ...], ...] = (1, 2, 3)  # DefendConfig.ks: the k tried without --k

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class DefendConfig:
    """What `defend` sweeps; the defaults are the ones `circuits defend` uses."""

    model: str
    weights: str | None = None  # local weights file; None: bundled/cache/random-init
    layers: tuple[str, ...] | None = None  # None: the model's default CLA layers
    # Text-circuit sizes to sweep: neurons per layer, one k or one per layer; ≤ 6% of edges needs small k.
    ks: tuple[int | tuple[int, ...], ...] = DEFAULT_KS
    kinds: tuple[str, ...] = ("circuit", "edge")  # edge: every circuit layer pair in turn
    baseline_seed: int = 0  # seed of the first random circuit of the same shape
    n_baselines: int = 5  # random circuits per row (seeds baseline_seed, baseline_seed + 1, …)
    budget: float = 0.02  # clean accuracy the defence may cost (0.02 = 2 points)
    target_cut: float = 5.0  # attack success must fall by this factor
    search: bool = False  # also beam-search a per-layer k on the search images (ingest.defence.search)
    max_edges: float = 0.06  # the search's edge budget (fraction of edges circuit pruning cuts)
    beam: int = 4  # circuits the search keeps per size
    batch_size: int = 64
    device: str = "auto"
    threads: int | None = None  # torch CPU threads, set for the process; None leaves them alone (the CLI sets them)

    def validate(self) -> None:
        """Raises DefendError on an empty or non-positive k list, unknown kinds or a bad budget."""
        flat = [x for k in self.ks for x in ((k,) if isinstance(k, int) else k)]
        if not self.ks or not flat or min(flat) < 1:
            raise DefendError(f"`ks=` must list positive integers, got {list(self.ks)}")
        bad = [k for k in self.kinds if k not in ("circuit", "edge")]
        if not self.kinds or bad:
            raise DefendError(f"unknown pruning kind {bad[0] if bad else ''!r}: use circuit and/or edge")
        if not 0 <= self.budget <= 1:
            raise DefendError(f"`budget=` is a share of accuracy in [0, 1] (0.02 = 2 points), got {self.budget}")
        if not 0 < self.max_edges <= 1:
            raise DefendError(f"`max_edges=` is a fraction of edges in (0, 1], got {self.max_edges}")
        if self.target_cut < 1:
            raise DefendError(f"`target_cut=` must be at least 1, got {self.target_cut}")
        if self.n_baselines < 1:
            raise DefendError(f"`n_baselines=` must be at least 1, got {self.n_baselines}")
        if self.threads is not None and self.threads < 1:
            raise DefendError(f"`threads=` must be at least 1, got {self.threads}")

    @property
    def baseline_seeds(self) -> tuple[int, ...]:
        return tuple(range(self.baseline_seed, self.baseline_seed + self.n_baselines))


def _check_target(target: DefenceTarget) -> None:
    from ingest.datasets.typo_sets import require_written

    require_written(target.attack_set)  # AttackLabelsMissing before anything is computed or stored
    if not target.clean_sets:
        raise DefendError("no clean class images to measure clean accuracy on: give at least one class")
    for name, s in target.clean_sets.items():
        if s.labels is None:
            raise DefendError(f"the clean images of {name} have no class labels: clean accuracy needs them")


def _register_sets(cat: Catalog, target: DefenceTarget) -> None:
    """Record the attack set under `text` and each clean set under its class (for prune-plan)."""
    with cat.writing() as s:  # a short transaction; the file is let go afterwards
        pairs = [(TEXT_CONCEPT, target.attack_set), *target.clean_sets.items()]
        for concept, image_set in pairs:
            cid = store.ensure_concept(s, concept)
            store.write_example_images(s, cid, image_set.sha256, list(zip(image_set.sha256s, image_set.sources)))


def defend(
    cat: Catalog, config: DefendConfig, target: DefenceTarget, *, progress: Progress | None = None
) -> DefenceReport:
    """Discover the text circuit, sweep k and pruning kinds, measure, store, recommend.

    Like `ingest.pipeline.ingest`, the catalog is held only to read and to write: every
    computation (CLA, the search, each evaluation) runs with the DuckDB file let go, and every
    result is written in its own short transaction (`Catalog.writing`), so other processes can
    read the catalog (`circuits sql`) during a run.

    Args:
        cat: an open, writable catalog.
        config: what to sweep.
        target: the images (and, for zero-shot models, the classifier).
        progress: optional callback (stage, done, total); the stages are `text circuit`,
            the ingest's own (`attribution`, `thumbnails`, `writing`), `searching per-layer k`,
            `pruning` (one step per pruned circuit and kind) and `held-out images`.

    Returns:
        A `DefenceReport`: one row per pruned circuit, the recommendation and why.

    Raises:
        DefendError, AttackLabelsMissing: bad settings or images, before anything is stored.
        IngestError, UnknownModel, WeightsError: from the pipeline (see `ingest.pipeline.ingest`).
    """
    from ingest import zoo
    from ingest.defence.contrast import contrast_ingest
    from ingest.defence.measure import measure_attack, measure_clean, measure_holdout
    from ingest.pipeline import IngestConfig, ingest_concept

    config.validate()
    _check_target(target)
    if config.threads is not None:
        from ingest.threads import configure

        configure(config.threads)
    cat.release()  # a caller's earlier reads must not keep the file held through the loading and computing
    model = zoo.load_model(config.model, weights=config.weights, layers=config.layers)  # once, for every k
    target.model_cache.setdefault((config.model, config.weights, tuple(model.layers)), model)
    report = progress or (lambda *_: None)
    circuits: list[tuple[int, tuple[int, ...], int]] = []  # (circuit id, k per layer, n layers)
    ks = list(dict.fromkeys(config.ks))
    steps: tuple = ()
    run_id, i = -1, 0
    while i < len(ks):
        report("text circuit", i, len(ks))
        ingest_config = IngestConfig(model=model, concept=TEXT_CONCEPT, k=ks[i], device=config.device)
        if target.plain_set is not None:
            res = contrast_ingest(cat, ingest_config, target.text_set, target.plain_set, progress=progress)
        else:
            res = ingest_concept(cat, ingest_config, target.text_set, progress=progress)
        run_id = res.run_id
        circuits.append((res.circuit_id, tuple(len(c) for c in res.channels), len(res.channels)))
        if i == 0 and config.search:
            steps = _search(cat, config, target, run_id, report)
            best = min(steps, key=lambda st: (st.attack_success, st.edge_fraction)) if steps else None
            if best is not None and best.k not in {tuple(c[1]) for c in circuits} and best.k not in ks:
                ks.append(best.k)
        i += 1
    report("text circuit", len(ks), len(ks))
    _register_sets(cat, target)

    jobs = [
        (cid, k_layers, kind, pair)
        for cid, k_layers, n_layers in circuits
        for kind in config.kinds
        for pair in ([None] if kind == "circuit" else range(n_layers - 1))
    ]
    rows = []
    # one progress step per evaluation: each random circuit on the attack images, each clean class
    per_job, done = len(config.baseline_seeds) + len(target.clean_sets), [0]

    def step() -> None:
        done[0] += 1
        report("pruning", done[0], per_job * len(jobs))

    report("pruning", 0, per_job * len(jobs))
    for cid, k_layers, kind, pair in jobs:
        common = _common(config, target, kind, pair)
        att = measure_attack(cat, cid, target.attack_set, baseline_seeds=config.baseline_seeds, step=step, **common)
        clean, clean_ids = measure_clean(
            cat, cid, target.clean_sets, baseline_seed=config.baseline_seed, step=step, **common
        )
        rows.append(
            DefenceRow(
                circuit_id=cid,
                k=k_layers,
                kind=kind,
                pair=pair,
                edge_fraction=att.edge_fraction,
                baseline_edge_fraction=att.baseline_edge_fraction,
                attack_success_clean=att.attack_success_clean,
                attack_success=att.attack_success,
                attack_success_random=att.random_mean,
                attack_success_random_sd=att.random_sd,
                clean_accuracy_clean=clean["clean"],
                clean_accuracy=clean["intervened"],
                clean_accuracy_random=clean["baseline"],
                attack_accuracy=att.attack_accuracy,
                intervention_ids=(*att.intervention_ids, *clean_ids),
            )
        )
    best, meets, reason = recommend(rows, config.budget, config.target_cut)
    holdout: list = []
    if best is not None and target.holdout:
        report("held-out images", 0, 1)
        holdout = measure_holdout(
            cat,
            best.circuit_id,
            target.holdout,
            baseline_seeds=config.baseline_seeds,
            **_common(config, target, best.kind, best.pair),
        )
        report("held-out images", 1, 1)
    return DefenceReport(
        config.model,
        run_id,
        tuple(rows),
        best,
        meets,
        config.budget,
        config.target_cut,
        reason,
        tuple(steps),
        tuple(holdout),
    )


def _common(config: DefendConfig, target: DefenceTarget, kind: str, pair: int | None) -> dict:
    """`ablate` keyword arguments every measurement of one pruning shares."""
    return dict(
        kind=kind,
        weights=config.weights,
        pair=pair or 0,
        batch_size=config.batch_size,
        device=config.device,
        model_cache=target.model_cache,
        force=target.force,
        threads=config.threads,
    )


def _search(cat: Catalog, config: DefendConfig, target: DefenceTarget, run_id: int, report: Progress) -> tuple:
    """The per-layer k search on the run's stored edges (see `ingest.defence.search`)."""
    from ingest import zoo
    from ingest.datasets.typo_sets import require_written
    from ingest.defence.search import search_k

    with cat.reading() as s:  # the search evaluates many circuits: hold nothing meanwhile
        run = store.read_run(s, run_id)
        matrices = store.read_run_matrices(s, run_id)
    key = (config.model, config.weights, tuple(run.layer_names))
    loaded = target.model_cache.get(key)
    if loaded is None:
        loaded = target.model_cache[key] = zoo.load_model(config.model, weights=config.weights, layers=run.layer_names)
    attack = target.search_attack or target.attack_set
    if target.search_clean is not None:
        clean_images, labels = list(target.search_clean.images), np.asarray(target.search_clean.labels)
    else:
        clean_images = [im for cs in target.clean_sets.values() for im in cs.images]
        labels = np.concatenate([np.asarray(cs.labels) for cs in target.clean_sets.values()])
    return tuple(
        search_k(
            loaded.module,
            list(run.layer_names),
            matrices,
            zoo.preprocess(loaded.spec, list(attack.images)),
            require_written(attack),
            zoo.preprocess(loaded.spec, clean_images),
            labels,
            max_edges=config.max_edges,
            budget=config.budget,
            beam=config.beam,
            batch_size=max(config.batch_size, 64),
            device=config.device,
            progress=report,
        )
    )
