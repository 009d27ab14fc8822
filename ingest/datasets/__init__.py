"""Synthetic image sets the project owns (docs/method.md, "Benchmarks").

- `catfish`: CatFish-synth, six textured primitives and twelve two-primitive classes on clutter
  (`render_concept`, `make_split`, `concept_names`); drawing lives in `shapes`.
- `typo`: Typographic-synth, CatFish-synth with class names written on the images (`render_typo`,
  `make_typo_split`, `write_word`); `typo_sets` wraps its sets (and attacks on any image folder) as
  `ImageSet`s that record the written class (`AttackImageSet`, `typo_image_set`, `attack_from_dir`).

NumPy and Pillow only: importing this package never imports torch.
"""

from __future__ import annotations

from ingest.datasets.catfish import (
    CLASS_NAMES,
    CLASS_PARTS,
    CLASSES,
    IMAGE_SIZE,
    PRIMITIVES,
    DatasetError,
    Placement,
    UnknownConcept,
    concept_names,
    concept_parts,
    make_split,
    render_concept,
    scene_layout,
)
from ingest.datasets.typo import TypoImages, make_typo_split, render_typo, typo_set_names, write_word
from ingest.datasets.typo_sets import (
    AttackImageSet,
    AttackLabelsMissing,
    UnknownClass,
    attack_from_dir,
    read_attack_dir,
    require_written,
    typo_image_set,
)

__all__ = [
    "CLASSES",
    "CLASS_NAMES",
    "CLASS_PARTS",
    "IMAGE_SIZE",
    "PRIMITIVES",
    "AttackImageSet",
    "AttackLabelsMissing",
    "DatasetError",
    "Placement",
    "TypoImages",
    "UnknownClass",
    "UnknownConcept",
    "attack_from_dir",
    "concept_names",
    "concept_parts",
    "make_split",
    "make_typo_split",
    "read_attack_dir",
    "render_concept",
    "render_typo",
    "require_written",
    "scene_layout",
    "typo_image_set",
    "typo_set_names",
    "write_word",
]
