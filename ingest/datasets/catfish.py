"""CatFish-synth: a procedural, seeded analogue of the CatFish benchmark (docs/method.md, "Benchmarks").

Six primitive visual concepts (a shape with its own texture, random colours; see `shapes`) are
drawn at random positions, scales and rotations on low-contrast clutter. A class is a pair of
primitives placed without overlap. The twelve classes are every pair of primitives except three
disjoint ones, so each primitive is part of four classes, two classes share a primitive or share
none, and the dropped pairs are the three most alike (two discs; square and hexagon; triangle and
star):

    stripes_checker stripes_dots stripes_star stripes_hatch checker_dots checker_rings
    checker_star dots_rings dots_hatch rings_star rings_hatch star_hatch

Concept image sets are a class's images or a primitive alone on clutter. Image `i` of concept
`name` under `seed` depends on those three values only, so the same seed gives the same pixels on
every machine and `render_concept(name, 8, seed=s)` is the first 8 of `render_concept(name, 32,
seed=s)`. Nothing is cached on disk.
"""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass

import numpy as np

from catalog.errors import CircuitsError
from ingest.datasets.shapes import PRIMITIVE_SHAPES, draw_background, draw_primitive

__all__ = [
    "CLASSES",
    "CLASS_NAMES",
    "CLASS_PARTS",
    "IMAGE_SIZE",
    "PRIMITIVES",
    "DatasetError",
    "Placement",
    "UnknownConcept",
    "concept_names",
    "concept_parts",
    "make_split",
    "render_concept",
    "scene_layout",
]

IMAGE_SIZE = 64
PRIMITIVES: tuple[str, ...] = PRIMITIVE_SHAPES

# Pairs left out so every primitive is in exactly four classes (a perfect matching of the six).
_EXCLUDED_PAIRS = {("stripes", "rings"), ("checker", "hatch"), ("dots", "star")}

CLASS_PARTS: dict[str, tuple[str, str]] = {
    f"{a}_{b}": (a, b) for a, b in itertools.combinations(PRIMITIVES, 2) if (a, b) not in _EXCLUDED_PAIRS
}
CLASSES: tuple[tuple[str, tuple[str, str]], ...] = tuple(CLASS_PARTS.items())
CLASS_NAMES: tuple[str, ...] = tuple(CLASS_PARTS)  # label order

RADIUS_RANGE = (9.0, 13.0)  # pixels: big enough to show four texture periods, two fit side by side
GAP = 2.0  # minimum free pixels between the circles that contain the two primitives
_SPLIT_KEY = 0x5B1F  # salt of the shuffle in `make_split`, distinct from any concept key


class DatasetError(CircuitsError):
    """A bad request for synthetic images (unknown concept, negative count or seed)."""


class UnknownConcept(DatasetError):
    """The concept name is neither a CatFish-synth class nor a primitive."""


@dataclass(frozen=True)
class Placement:
    """Where one primitive is drawn: centre and containing-circle radius in pixels, angle in rad."""

    primitive: str
    cx: float
    cy: float
    radius: float
    angle: float


def concept_names() -> list[str]:
    """Every concept with an image set: the primitives, then the classes in label order."""
    return [*PRIMITIVES, *CLASS_NAMES]


def concept_parts(name: str) -> tuple[str, ...]:
    """The primitives a concept shows: `(name,)` for a primitive, its pair for a class.

    Raises:
        UnknownConcept: `name` is not in `concept_names()`.
    """
    if name in CLASS_PARTS:
        return CLASS_PARTS[name]
    if name in PRIMITIVES:
        return (name,)
    raise UnknownConcept(
        f"unknown CatFish-synth concept {name!r}: use a class ({', '.join(CLASS_NAMES)}) "
        f"or a primitive ({', '.join(PRIMITIVES)})"
    )


def _check_count(n: int, what: str) -> None:
    if n < 0:
        raise DatasetError(f"{what} must be 0 or more, got {n}: pass a non-negative count")


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise DatasetError(f"seed must be 0 or more, got {seed}: pass a non-negative seed")


def _image_rng(name: str, index: int, seed: int) -> np.random.Generator:
    """The generator of image `index` of concept `name`: a function of the three values only."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), index])


def _layout(parts: tuple[str, ...], rng: np.random.Generator) -> tuple[Placement, ...]:
    """Random non-overlapping placements of `parts` (one or two primitives) on the canvas."""
    lo, hi = RADIUS_RANGE
    order = list(parts)
    if len(order) == 2 and rng.random() < 0.5:
        order.reverse()  # neither primitive of a class favours the first (freer) position
    radii = rng.uniform(lo, hi, len(order))
    angles = rng.uniform(0.0, 2 * math.pi, len(order))
    first = rng.uniform(radii[0] + 1, IMAGE_SIZE - radii[0] - 1, 2)
    centres = [first]
    if len(order) == 2:
        r2 = radii[1]
        need = radii[0] + r2 + GAP
        while True:
            cand = rng.uniform(r2 + 1, IMAGE_SIZE - r2 - 1, (32, 2))  # (32, 2) candidate centres
            ok = np.hypot(*(cand - first).T) >= need
            if ok.any():
                centres.append(cand[int(np.argmax(ok))])
                break
            first = rng.uniform(radii[0] + 1, IMAGE_SIZE - radii[0] - 1, 2)  # too central: move
            centres[0] = first
    return tuple(
        Placement(p, float(c[0]), float(c[1]), float(r), float(a)) for p, c, r, a in zip(order, centres, radii, angles)
    )


def scene_layout(name: str, index: int, *, seed: int) -> tuple[Placement, ...]:
    """The placements drawn in image `index` of `render_concept(name, ..., seed=seed)`.

    Args:
        name: a class or primitive name.
        index: the image's position in the concept's image set.
        seed: the image set's seed (non-negative).

    Returns:
        One `Placement` per primitive in the image (one or two).

    Raises:
        UnknownConcept: `name` is not a CatFish-synth concept.
        DatasetError: `index` or `seed` is negative.
    """
    parts = concept_parts(name)
    _check_count(index, "the image index")
    _check_seed(seed)
    return _layout(parts, _image_rng(name, index, seed))


def _render_one(name: str, parts: tuple[str, ...], index: int, seed: int) -> np.ndarray:
    rng = _image_rng(name, index, seed)
    placements = _layout(parts, rng)
    canvas = draw_background(IMAGE_SIZE, rng)  # (H, W, 3) float32
    for pl in placements:
        draw_primitive(canvas, pl.primitive, pl.cx, pl.cy, pl.radius, pl.angle, rng)
    canvas += rng.normal(0.0, rng.uniform(0.01, 0.04), canvas.shape).astype(np.float32)
    return np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_concept(name: str, n: int, *, seed: int) -> np.ndarray:
    """Render `n` images of a class (its two primitives) or of a primitive alone, on clutter.

    Args:
        name: a class name (`CLASS_NAMES`) or a primitive name (`PRIMITIVES`).
        n: number of images.
        seed: non-negative seed; image `i` depends only on (name, i, seed).

    Returns:
        uint8 array (n, IMAGE_SIZE, IMAGE_SIZE, 3), RGB.

    Raises:
        UnknownConcept: `name` is not a CatFish-synth concept (the message lists them).
        DatasetError: `n` or `seed` is negative.
    """
    parts = concept_parts(name)
    _check_count(n, "the number of images")
    _check_seed(seed)
    out = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for i in range(n):
        out[i] = _render_one(name, parts, i, seed)
    return out


def make_split(n_per_class: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A labelled, shuffled set of class images: `n_per_class` of every class.

    The images of class `c` are `render_concept(CLASS_NAMES[c], n_per_class, seed=seed)`, shuffled
    together by a permutation that depends on `seed` only.

    Args:
        n_per_class: images per class.
        seed: non-negative seed.

    Returns:
        `(images, labels)`: uint8 (N, H, W, 3) and int64 (N,) indices into `CLASS_NAMES`,
        N = n_per_class * len(CLASS_NAMES).

    Raises:
        DatasetError: `n_per_class` or `seed` is negative.
    """
    _check_count(n_per_class, "n_per_class")
    _check_seed(seed)
    images = np.concatenate([render_concept(c, n_per_class, seed=seed) for c in CLASS_NAMES])
    labels = np.repeat(np.arange(len(CLASS_NAMES), dtype=np.int64), n_per_class)
    perm = np.random.default_rng([seed, _SPLIT_KEY]).permutation(len(labels))
    return images[perm], labels[perm]
