"""`circuits demo`: the product's main job on the bundled catfish-mini model.

Ingests a circuit for every CatFish-synth primitive and class into the catalog, prunes every
primitive circuit on every class (beside a random circuit of the same shape), and measures the
paper's three CatFish claims — composition, reuse, causality — from what was stored. Everything
is idempotent: a second run reuses the stored runs and evaluations.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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


@dataclass(frozen=True)
class Claim:
    name: str
    holds: bool
    summary: str
    figures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoResult:
    db: str
    report_path: Path
    heatmap_path: Path
    claims: tuple[Claim, ...]
    seconds: float
    circuits: dict[str, int]  # concept → circuit id


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _neurons(channels) -> set[tuple[int, int]]:
    return {(i, c) for i, layer in enumerate(channels) for c in layer}


def composition_claim(parts: dict[str, tuple[str, str]], neurons: dict[str, set]) -> Claim:
    """Each class circuit overlaps more with its two primitives' circuits than with the others'.

    A class counts when the mean Jaccard with its own two primitives' circuits exceeds the mean
    with the other primitives' circuits. The stricter count (both own primitives above every
    other primitive) is reported beside it.
    """
    primitives = sorted({p for pair in parts.values() for p in pair})
    own_all, other_all, holds, strict = [], [], 0, 0
    for cls, pair in parts.items():
        own = [jaccard(neurons[cls], neurons[p]) for p in pair]
        other = [jaccard(neurons[cls], neurons[p]) for p in primitives if p not in pair]
        own_all += own
        other_all += other
        holds += float(np.mean(own)) > float(np.mean(other))
        strict += min(own) > max(other)
    n = len(parts)
    f = {"classes_holding": holds, "classes_holding_strict": strict, "classes": n,
         "mean_jaccard_own": float(np.mean(own_all)), "mean_jaccard_other": float(np.mean(other_all))}
    return Claim(
        "composition",
        holds == n,
        f"{holds}/{n} classes overlap their own two primitives' circuits more than the others' on average "
        f"(strictly, both above every other primitive: {strict}/{n}); mean Jaccard own "
        f"{f['mean_jaccard_own']:.3f} vs other {f['mean_jaccard_other']:.3f}",
        f,
    )


def reuse_claim(parts: dict[str, tuple[str, str]], neurons: dict[str, set]) -> Claim:
    """Class pairs that share a primitive have more circuit overlap than pairs that share none."""
    shared, disjoint = [], []
    for a, b in itertools.combinations(sorted(parts), 2):
        j = jaccard(neurons[a], neurons[b])
        (shared if set(parts[a]) & set(parts[b]) else disjoint).append(j)
    f = {"mean_jaccard_sharing": float(np.mean(shared)), "mean_jaccard_disjoint": float(np.mean(disjoint)),
         "pairs_sharing": len(shared), "pairs_disjoint": len(disjoint)}
    return Claim(
        "reuse",
        f["mean_jaccard_sharing"] > f["mean_jaccard_disjoint"],
        f"class pairs sharing a primitive: mean Jaccard {f['mean_jaccard_sharing']:.3f} ({len(shared)} pairs); "
        f"sharing none: {f['mean_jaccard_disjoint']:.3f} ({len(disjoint)} pairs)",
        f,
    )


def causality_claim(parts: dict[str, tuple[str, str]], drops: dict[tuple[str, str], tuple[float, float]]) -> Claim:
    """Pruning primitive P hurts classes containing P far more than others, and than random.

    Args:
        drops: (primitive, class) → (accuracy drop of the circuit, of the random baseline).
    """
    with_p = [d for (p, c), (d, _) in drops.items() if p in parts[c]]
    without_p = [d for (p, c), (d, _) in drops.items() if p not in parts[c]]
    random_with_p = [r for (p, c), (_, r) in drops.items() if p in parts[c]]
    f = {"drop_with": float(np.mean(with_p)), "drop_without": float(np.mean(without_p)),
         "drop_random": float(np.mean(random_with_p))}
    holds = f["drop_with"] > 2 * max(f["drop_without"], 0.0) and f["drop_with"] > 2 * max(f["drop_random"], 0.0)
    return Claim(
        "causality",
        holds,
        f"mean top-1 accuracy drop when pruning primitive P's circuit: classes containing P "
        f"{100 * f['drop_with']:.1f} pts, classes without P {100 * f['drop_without']:.1f} pts, "
        f"random circuit of the same shape on classes containing P {100 * f['drop_random']:.1f} pts",
        f,
    )


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
    from ingest.pipeline import IngestConfig, ingest, resolve_images

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    cat = open_catalog(db, create=True)
    parts = dict(catfish.CLASS_PARTS)
    primitives = list(catfish.PRIMITIVES)
    concepts = primitives + list(parts)
    circuits: dict[str, int] = {}
    neurons: dict[str, set] = {}
    for i, name in enumerate(concepts):
        if progress:
            progress("circuits", i, len(concepts))
        images = resolve_images(None, f"catfish:{name}", n=config.n_concept_images, seed=config.concept_seed)
        r = ingest(cat, IngestConfig(model=MODEL, concept=name, k=config.k, layers=config.layers), images)
        circuits[name] = r.circuit_id
        neurons[name] = _neurons(r.channels)
    if progress:
        progress("circuits", len(concepts), len(concepts))

    eval_sets = {c: resolve_images(None, f"catfish:{c}", n=config.n_eval_images, seed=config.eval_seed) for c in parts}
    drops: dict[tuple[str, str], tuple[float, float]] = {}
    cache: dict = {}
    jobs = [(p, c) for p in primitives for c in parts]
    for i, (p, c) in enumerate(jobs):
        if progress:
            progress("ablations", i, len(jobs))
        r = ablate(cat, circuits[p], eval_sets[c], kind="circuit", baseline_seed=config.baseline_seed,
                   model_cache=cache)
        drops[(p, c)] = (r.clean["accuracy"] - r.intervened["accuracy"], r.clean["accuracy"] - r.baseline["accuracy"])
    if progress:
        progress("ablations", len(jobs), len(jobs))

    claims = (composition_claim(parts, neurons), reuse_claim(parts, neurons), causality_claim(parts, drops))
    heatmap = out / "overlap.png"
    _plot_overlap(concepts, neurons, heatmap)
    report = out / "report.md"
    seconds = time.perf_counter() - t0
    report.write_text(_markdown(cat.display, claims, parts, drops, seconds, config))
    return DemoResult(cat.display, report, heatmap, claims, seconds, circuits)


def _plot_overlap(concepts: list[str], neurons: dict[str, set], path: Path) -> None:
    from queries.plots import heatmap

    m = np.array([[jaccard(neurons[a], neurons[b]) for b in concepts] for a in concepts])
    heatmap(m, concepts, concepts, path, title="catfish-mini circuit overlap (Jaccard over neurons)")


def _markdown(url, claims, parts, drops, seconds, config) -> str:
    lines = [
        "# circuits demo: catfish-mini on CatFish-synth",
        "",
        f"Catalog: `{url}`. k = {config.k} neurons per layer, {config.n_concept_images} example images per "
        f"concept (seed {config.concept_seed}), {config.n_eval_images} held-out images per class for each "
        f"intervention (seed {config.eval_seed}). Finished in {seconds:.0f} s.",
        "",
        "| claim | holds | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {c.name} | {'yes' if c.holds else 'NO'} | {c.summary} |" for c in claims]
    lines += ["", "## Accuracy drop (points) when pruning each primitive's circuit", ""]
    classes = list(parts)
    prims = sorted({p for p, _ in drops})
    lines.append("| primitive | " + " | ".join(classes) + " |")
    lines.append("|---" * (len(classes) + 1) + "|")
    for p in prims:
        cells = []
        for c in classes:
            d, r = drops[(p, c)]
            mark = "**" if p in parts[c] else ""
            cells.append(f"{mark}{100 * d:.0f}{mark} ({100 * r:.0f})")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines += ["", "Bold: the class contains the primitive. In brackets: a random circuit of the same shape.", ""]
    return "\n".join(lines)
