"""What a typographic-attack defence runs on: the images (and classifier) of `DefenceTarget`, and
`typo_target`, the Typographic-synth one for typo-mini (`ingest.defence.clip` builds one for a
zero-shot CLIP classifier). `ingest.defence.defend` runs the defence on a target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from catalog.errors import CircuitsError
from ingest.images import ImageSet

__all__ = [
    "CONCEPT_SEED_OFFSET",
    "HOLDOUT_SEEDS",
    "SEARCH_SEED_OFFSET",
    "TEXT_SETS",
    "DefenceTarget",
    "DefendError",
    "check_typo_model",
    "typo_target",
]

SEARCH_SEED_OFFSET = 1000  # the k search measures on images of seed + this, never on the reported ones
CONCEPT_SEED_OFFSET = 500  # the contrast concept's images: seed + this (neither reported nor searched)
HOLDOUT_SEEDS = (21, 31, 41)  # typo-mini's default held-out attack images (README table)
TEXT_SETS = ("contrast", "typo:text:names", "typo:text")


class DefendError(CircuitsError):
    """A defence run cannot be carried out as asked."""


@dataclass(frozen=True)
class DefenceTarget:
    """The images (and, for zero-shot models, the classifier) a defence run uses.

    Attributes:
        text_set: the text concept's images, for CLA.
        attack_set: attack images recording the written class per image (`AttackImageSet`).
        clean_sets: class name -> clean images of that class (labelled).
        model_cache: models `ablate` should use instead of loading from the zoo (a zero-shot
            classifier), keyed `(model name, weights, layers)`.
        force: evaluate again even when the same evaluation is stored (a zero-shot classifier's
            class embeddings are not part of the stored weights identity).
        search_attack, search_clean: the images the per-layer k search measures on (other images
            than the reported ones); None: the reported ones.
        plain_set: the text images without their text, in the same order: the text circuit is
            then a contrast run (`ingest.defence.contrast`); None: plain CLA on `text_set`.
        holdout: (seed, attack set, clean sets) per held-out seed, to measure the recommended
            circuit on images nothing was chosen on.
    """

    text_set: ImageSet
    attack_set: ImageSet
    clean_sets: dict[str, ImageSet]
    model_cache: dict = field(default_factory=dict)
    force: bool = False
    search_attack: ImageSet | None = None
    search_clean: ImageSet | None = None
    plain_set: ImageSet | None = None
    holdout: tuple[tuple[int, ImageSet, tuple[ImageSet, ...]], ...] = ()


def typo_target(
    *,
    n_text: int = 192,
    n_attack: int = 240,
    n_clean_per_class: int = 20,
    seed: int = 1,
    classes: Sequence[str] | None = None,
    text: str = "contrast",
    search_scale: int = 3,
    holdout_seeds: Sequence[int] = (),
) -> DefenceTarget:
    """The Typographic-synth target for typo-mini.

    Args:
        text: the text concept: `contrast` (class names written on CatFish-synth images,
            `typo:attack`, against the same images without them, `typo:clean`, of seed
            `seed + CONCEPT_SEED_OFFSET`), `typo:text:names` (the class names alone on plain or
            cluttered backgrounds) or `typo:text` (also other words).
        classes: the clean classes to keep (default all twelve).
        seed: the seed of the reported attack and clean images (the training run draws its
            images from other, derived seeds).
        search_scale: the k search measures on this many times the reported number of attack
            images (and twice the clean ones), of seed `seed + SEARCH_SEED_OFFSET`: on 240 images
            a search picks k that are lucky on them (measured).
        holdout_seeds: seeds of further attack and clean images (as many as the reported ones) to
            measure the recommended circuit on; they must differ from the others.

    Raises:
        UnknownClass: a class that is not a Typographic-synth class.
        DefendError: an unknown text concept, or a held-out seed that the run already uses.
    """
    from ingest.datasets.catfish import CLASS_NAMES
    from ingest.datasets.typo_sets import check_classes, typo_image_set

    keep = tuple(CLASS_NAMES) if classes is None else check_classes(classes, CLASS_NAMES)
    if text not in TEXT_SETS:
        raise DefendError(f"the text concept is one of {', '.join(TEXT_SETS)}, not {text!r}")
    search_seed, concept_seed = seed + SEARCH_SEED_OFFSET, seed + CONCEPT_SEED_OFFSET
    used = {seed, search_seed} | ({concept_seed} if text == "contrast" else set())
    clash = sorted(used & set(holdout_seeds))
    if clash or len(set(holdout_seeds)) != len(holdout_seeds):
        raise DefendError(
            f"held-out seed {clash[0] if clash else 'repeated'}: held-out images must be other images "
            f"than the reported ({seed}), searched ({search_seed}) and concept ({concept_seed}) ones"
        )
    if search_scale < 1:
        raise DefendError(f"search_scale must be at least 1, got {search_scale}")
    if text == "contrast":
        text_set = typo_image_set("typo:attack", n_text, seed=concept_seed)
        plain_set = typo_image_set("typo:clean", n_text, seed=concept_seed)  # the same images, no text
    else:
        text_set, plain_set = typo_image_set(text, n_text, seed=seed), None
    n_clean = n_clean_per_class * len(keep)
    return DefenceTarget(
        text_set=text_set,
        attack_set=typo_image_set("typo:attack", n_attack, seed=seed),
        clean_sets={c: typo_image_set(f"typo:clean:{c}", n_clean_per_class, seed=seed) for c in keep},
        search_attack=typo_image_set("typo:attack", search_scale * n_attack, seed=search_seed),
        search_clean=typo_image_set("typo:clean", 2 * n_clean, seed=search_seed),
        plain_set=plain_set,
        holdout=tuple(
            (
                s,
                typo_image_set("typo:attack", n_attack, seed=s),
                tuple(typo_image_set(f"typo:clean:{c}", n_clean_per_class, seed=s) for c in keep),
            )
            for s in holdout_seeds
        ),
    )


def check_typo_model(model: str) -> None:
    """Refuse a model that is not a Typographic-synth classifier (its classes must be CLASS_NAMES).

    Raises:
        DefendError: the model has other classes, or none (an image tower needs --classes).
    """
    from ingest import zoo
    from ingest.datasets.catfish import CLASS_NAMES

    spec = zoo.get_spec(model)
    if spec.labels is None:
        raise DefendError(f"{model} has no classifier head: use it zero-shot with `classes=` a,b,c and `images=` DIR")
    if tuple(spec.labels) != tuple(CLASS_NAMES):
        raise DefendError(
            f"{model} does not classify Typographic-synth classes: use typo-mini, or `classes=` "
            "and `images=` for a zero-shot image tower"
        )
