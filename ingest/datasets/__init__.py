"""Synthetic image sets the project owns (DESIGN §9).

- `catfish`: CatFish-synth, six textured primitives and twelve two-primitive classes on clutter
  (`render_concept`, `make_split`, `concept_names`); drawing lives in `shapes`.

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

__all__ = [
    "CLASSES",
    "CLASS_NAMES",
    "CLASS_PARTS",
    "DatasetError",
    "IMAGE_SIZE",
    "PRIMITIVES",
    "Placement",
    "UnknownConcept",
    "concept_names",
    "concept_parts",
    "make_split",
    "render_concept",
    "scene_layout",
]
