"""Typographic image sets as the pipeline sees them: `ImageSet`s that also know the written class.

- `typo_image_set("typo:attack:CLASS", n, seed=s)` and the other `render_typo` names: rendered
  Typographic-synth sets, named `NAME#seed=S` as `catfish:` sets are.
- `attack_from_dir(folder, classes, seed=…)`: a typographic attack on any image folder (a CLIP
  harness): each image gets a random *other* class's name written on it, recorded per image.
- `read_attack_dir(folder, classes)`: attack images made elsewhere, with their written classes in
  `written.csv` (`file,written` rows) beside them.
- `require_written(image_set)`: the check every attack measurement makes first.

NumPy and Pillow only (no torch).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catalog.errors import CircuitsError
from catalog.image_set_names import image_set_name
from ingest.datasets.catfish import CLASS_NAMES
from ingest.datasets.typo import render_text, render_typo, write_word
from ingest.images import ImageSet, read_image_dir, rendered_image_set

__all__ = [
    "WRITTEN_FILE",
    "AttackImageSet",
    "AttackLabelsMissing",
    "UnknownClass",
    "attack_from_dir",
    "check_classes",
    "is_attack_set",
    "read_attack_dir",
    "require_written",
    "text_image_set",
    "typo_image_set",
]

WRITTEN_FILE = "written.csv"  # beside attack images made elsewhere: `file,written` per image


class AttackLabelsMissing(CircuitsError):
    """An attack image set does not record which class is written on each image."""


class UnknownClass(CircuitsError):
    """A class name is not one of the model's (or the given) classes."""


@dataclass(frozen=True)
class AttackImageSet(ImageSet):
    """An `ImageSet` of typographic attacks.

    Attributes:
        written: per image, the index (into `class_names`) of the class written on it; None when
            it was not recorded (measuring the attack then fails with `AttackLabelsMissing`).
        class_names: the classes `labels` and `written` index.
    """

    written: tuple[int, ...] | None = None
    class_names: tuple[str, ...] = CLASS_NAMES


def is_attack_set(image_set: ImageSet) -> bool:
    """True for an attack set: an `AttackImageSet`, or a set named like one (`typo:attack…`)."""
    return isinstance(image_set, AttackImageSet) or image_set.name.startswith("typo:attack")


def require_written(image_set: ImageSet) -> np.ndarray:
    """The written class of every image of an attack set.

    Raises:
        AttackLabelsMissing: the set does not record them (or not one per image).
    """
    written = getattr(image_set, "written", None)
    if written is None or len(written) != len(image_set):
        raise AttackLabelsMissing(
            f"attack set {image_set.name} does not record which class is written on each image: "
            f"use `dataset=` typo:attack, generate attacks from a folder with `circuits defend … --images DIR`, "
            f"or put a {WRITTEN_FILE} (file,written) beside the images"
        )
    return np.asarray(written, dtype=np.int64)


def check_classes(classes: Sequence[str], known: Sequence[str] | None = None) -> tuple[str, ...]:
    """Validate a class list: at least two, no blanks or repeats, each in `known` when given.

    Raises:
        UnknownClass: an empty, repeated or unknown name, or fewer than two classes.
    """
    names = tuple(c.strip() for c in classes)
    if len(names) < 2 or any(not c for c in names):
        raise UnknownClass(f"give at least two non-empty class names (got {list(classes)}): `classes=` a,b,c")
    if len(set(names)) != len(names):
        raise UnknownClass(f"a class is named twice in {list(names)}: list each class once")
    if known is not None:
        unknown = [c for c in names if c not in known]
        if unknown:
            raise UnknownClass(f"unknown class {unknown[0]!r}: the classes are {', '.join(known)}")
    return names


def typo_image_set(name: str, n: int, *, seed: int) -> ImageSet:
    """A rendered Typographic-synth set (`typo:clean[:C]`, `typo:attack[:C]`, `typo:text`).

    Raises:
        UnknownConcept, DatasetError: see `ingest.datasets.typo.render_typo`.
    """
    r = render_typo(name, n, seed=seed)
    kind, _, rest = name.partition(":")
    set_name = image_set_name(kind, rest, seed)
    if r.written is None:
        return rendered_image_set(set_name, r.images, r.labels)
    base = rendered_image_set(set_name, r.images, r.labels)
    return AttackImageSet(**vars(base), written=tuple(int(w) for w in r.written))


def text_image_set(n: int, *, seed: int, words: Sequence[str], size: int) -> ImageSet:
    """The text concept for any model: `n` images of the words on plain/cluttered backgrounds."""
    r = render_text(n, seed=seed, words=tuple(words), size=size)
    return rendered_image_set(image_set_name("typo", "text", seed, size=size), r.images)


def attack_from_dir(
    folder: str | Path, classes: Sequence[str], *, seed: int, label: str | None = None
) -> AttackImageSet:
    """Write a random other class's name on every image of a folder (a typographic attack).

    Args:
        folder: PNG/JPEG images, read as `ingest.images.read_image_dir` reads them.
        classes: the class names (prompts) the zero-shot model chooses from.
        seed: which class is written where, and where, depends on it only.
        label: the images' true class (one of `classes`), or None when unknown: then any class
            may be written and attack accuracy is not measured.

    Raises:
        ImageSetError: the folder has no readable image.
        UnknownClass: `label` is not in `classes`, or `classes` is not a valid list.
    """
    classes = check_classes(classes)
    if label is not None and label not in classes:
        raise UnknownClass(f"unknown class {label!r} for `label=`: the classes are {', '.join(classes)}")
    plain = read_image_dir(folder)
    true = None if label is None else classes.index(label)
    images, written = [], []
    for i, image in enumerate(plain.images):
        rng = np.random.default_rng([seed, 0xA77C, i])
        w = int(rng.integers(len(classes) - (true is not None)))
        if true is not None:
            w += w >= true  # any class but the true one
        images.append(write_word(image, classes[w], rng))
        written.append(w)
    return _attack_set(f"attack:{plain.name}#seed={seed}", images, plain.sources, written, true, classes)


def _attack_set(
    name: str,
    images: Sequence[np.ndarray],
    sources: Sequence[str],
    written: Sequence[int],
    true: int | None,
    classes: Sequence[str],
) -> AttackImageSet:
    hashes = tuple(hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images)
    labels = None if true is None else tuple([true] * len(images))
    return AttackImageSet(
        name,
        tuple(images),
        hashes,
        tuple(f"{s}#attack" for s in sources),
        (),
        labels,
        written=tuple(int(w) for w in written),
        class_names=tuple(classes),
    )


def read_attack_dir(folder: str | Path, classes: Sequence[str], *, label: str | None = None) -> AttackImageSet:
    """Attack images made elsewhere, with `written.csv` (`file,written` per image) beside them.

    Raises:
        AttackLabelsMissing: no `written.csv`, or an image without a row.
        UnknownClass: a written class or `label` not in `classes`.
        ImageSetError: the folder has no readable image.
    """
    classes = check_classes(classes)
    plain = read_image_dir(folder)
    table = Path(folder).expanduser() / WRITTEN_FILE
    if not table.is_file():
        raise AttackLabelsMissing(
            f"{folder} has no {WRITTEN_FILE}: attack images need the class written on each one "
            f"(rows `file,written`), or let `circuits defend … --images DIR` write the attacks"
        )
    with table.open(newline="") as f:
        rows = {r["file"]: r["written"].strip() for r in csv.DictReader(f) if r.get("file")}
    written = []
    for src in plain.sources:
        w = rows.get(Path(src).name)
        if w is None:
            raise AttackLabelsMissing(f"{WRITTEN_FILE} in {folder} has no row for {Path(src).name}: add one")
        if w not in classes:
            raise UnknownClass(f"{WRITTEN_FILE} writes {w!r} on {Path(src).name}, not one of {', '.join(classes)}")
        written.append(classes.index(w))
    true = None
    if label is not None:
        if label not in classes:
            raise UnknownClass(f"unknown class {label!r} for `label=`: the classes are {', '.join(classes)}")
        true = classes.index(label)
    return AttackImageSet(
        plain.name,
        plain.images,
        plain.sha256s,
        plain.sources,
        plain.skipped,
        None if true is None else tuple([true] * len(plain)),
        written=tuple(written),
        class_names=classes,
    )
