"""`circuits demo`: the product's main job on the bundled catfish-mini model (orchestration only).

Ingests a circuit for every CatFish-synth primitive and class into the catalog, prunes every
primitive circuit on every class (beside a random circuit of the same shape), then has
`queries.claims` measure the paper's three CatFish claims — composition, reuse, causality — from
what was stored, and writes the report and the overlap heat-map. Everything is idempotent: a
second run reuses the stored runs and evaluations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from queries.claims import Claim

MODEL = "catfish-mini"


@dataclass(frozen=True)
class DemoConfig:
    k: int = 3  # neurons per layer: 2–5% of catfish-mini's 64–128-channel layers (k=5 prunes too much: README)
    layers: tuple[str, ...] | None = None  # None: the adapter's default CLA layers
    n_concept_images: int = 32  # CLA examples per concept; the paper uses a few dozen
    n_eval_images: int = 64  # held-out images per class for each intervention
    concept_seed: int = 0
    eval_seed: int = 1  # different seed: evaluation images are not the circuit's examples
    baseline_seed: int = 0

    def describe(self) -> str:
        """The settings as the report states them."""
        return (
            f"k = {self.k} neurons per layer, {self.n_concept_images} example images per concept "
            f"(seed {self.concept_seed}), {self.n_eval_images} held-out images per class for each "
            f"intervention (seed {self.eval_seed})."
        )


@dataclass(frozen=True)
class DemoResult:
    db: str
    report_path: Path
    heatmap_path: Path
    claims: tuple[Claim, ...]
    seconds: float
    circuits: dict[str, int]  # concept → circuit id


def run_demo(
    db: str | None,
    out: Path,
    config: DemoConfig = DemoConfig(),
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> DemoResult:
    """Ingest every CatFish concept, ablate every primitive circuit on every class, report."""
    from catalog.engine import open_catalog
    from ingest.ablation import ablate
    from ingest.datasets import catfish
    from ingest.image_sets import resolve_images
    from ingest.pipeline import IngestConfig, ingest_concept
    from queries.claims import catfish_claims, report_markdown
    from queries.plots import heatmap

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    cat = open_catalog(db, create=True)
    parts = dict(catfish.CLASS_PARTS)
    primitives = list(catfish.PRIMITIVES)
    concepts = primitives + list(parts)
    circuits: dict[str, int] = {}
    for i, name in enumerate(concepts):
        if progress:
            progress("circuits", i, len(concepts))
        images = resolve_images(dataset=f"catfish:{name}", n=config.n_concept_images, seed=config.concept_seed)
        r = ingest_concept(cat, IngestConfig(model=MODEL, concept=name, k=config.k, layers=config.layers), images)
        circuits[name] = r.circuit_id
    if progress:
        progress("circuits", len(concepts), len(concepts))

    eval_sets = {
        c: resolve_images(dataset=f"catfish:{c}", n=config.n_eval_images, seed=config.eval_seed) for c in parts
    }
    interventions: dict[tuple[str, str], int] = {}
    cache: dict = {}
    jobs = [(p, c) for p in primitives for c in parts]
    for i, (p, c) in enumerate(jobs):
        if progress:
            progress("ablations", i, len(jobs))
        ablated = ablate(
            cat, circuits[p], eval_sets[c], kind="circuit", baseline_seed=config.baseline_seed, model_cache=cache
        )
        interventions[(p, c)] = ablated.intervention_id
    if progress:
        progress("ablations", len(jobs), len(jobs))

    with cat.session() as s:
        report = catfish_claims(s, parts, circuits, interventions)
    heatmap_path = out / "overlap.png"
    heatmap(
        report.overlap(concepts),
        concepts,
        concepts,
        heatmap_path,
        title="catfish-mini circuit overlap (Jaccard over neurons)",
    )
    report_path = out / "report.md"
    seconds = time.perf_counter() - t0
    report_path.write_text(report_markdown(report, catalog=cat.display, seconds=seconds, settings=config.describe()))
    return DemoResult(cat.display, report_path, heatmap_path, report.claims, seconds, circuits)
