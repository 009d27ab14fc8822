"""Typographic-synth: CatFish-synth with class names written on the images (docs/method.md, "Benchmarks").

The public typographic-attack benchmarks write a class name on a photo in a plain font about a
sixth of the image high, at a random place, in a colour with a contrasting outline. This module
does the same to CatFish-synth images with Pillow's bundled scalable font (`ImageFont.load_default
(size=…)`, Pillow ≥ 10.1; no system font is needed). A class name `stripes_checker` is written as
its two words on two lines, `stripes` over `checker`, so it fits a 64-pixel image.

Image sets (names as `--dataset` takes them):

    typo:clean:<class>   the class's CatFish-synth images, no text (labels: the class)
    typo:attack:<class>  the same images with a *different* class's name written on them; which
                         one is recorded per image (`written`), so attack success is measurable
    typo:clean, typo:attack   the same, all classes in turn (image i is of class i mod 12)
    typo:text            the text concept: words (class names and other strings) on plain and
                         cluttered backgrounds, no primitives (no labels)
    typo:text:names      the same with the class names only (the words an attack writes)

Training images (`make_typo_split`) carry the *true* class name on a share of the images and, on
another share, show the name alone on a background (still labelled with that class), as web
images with captions taught CLIP to read. Everything is a function of (set, index, seed): the same
seed gives the same pixels on every machine. NumPy and Pillow only.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ingest.datasets.catfish import (
    CLASS_NAMES,
    IMAGE_SIZE,
    DatasetError,
    UnknownConcept,
    _check_count,
    _check_seed,
    render_concept,
)
from ingest.datasets.shapes import draw_background

__all__ = [
    "DISTRACTOR_WORDS",
    "PALETTE",
    "TEXT_WORDS",
    "TypoImages",
    "display_text",
    "make_typo_split",
    "render_attack",
    "render_text",
    "render_typo",
    "typo_set_names",
    "write_word",
]

# Fill colours; the outline is the palette colour farthest in brightness from the fill.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 255, 255),
    (0, 0, 0),
    (230, 30, 30),
    (250, 220, 30),
    (30, 80, 230),
    (30, 180, 60),
)
# Strings that are not class names, so the text concept is "letters", not "these twelve labels".
DISTRACTOR_WORDS: tuple[str, ...] = (
    "apple",
    "ipod",
    "stop",
    "sale",
    "open",
    "cat",
    "fish",
    "exit",
    "menu",
    "hello",
    "text",
    "north",
    "pizza",
    "radio",
    "lamp",
    "wave",
)
TEXT_WORDS: tuple[str, ...] = (*CLASS_NAMES, *DISTRACTOR_WORDS)

_ATTACK_KEY, _TEXT_KEY, _TRAIN_KEY = 0x7A11, 0x7E47, 0x7A1E  # salts: each set has its own stream


@dataclass(frozen=True)
class TypoImages:
    """Rendered images with what is known about each one.

    Attributes:
        images: uint8 (N, H, W, 3) RGB.
        labels: true class index per image (into `CLASS_NAMES`), or None (the text concept).
        written: index of the class whose name is written on each image, or None where no class
            name is written (clean images, the text concept).
    """

    images: np.ndarray
    labels: np.ndarray | None
    written: np.ndarray | None


def display_text(word: str) -> str:
    """How a word is written: a class name's parts on separate lines (`stripes_checker` ->
    `stripes\\nchecker`), other words as they are."""
    return word.replace("_", "\n")


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError as exc:  # Pillow < 10.1 has no scalable default font
        raise DatasetError(f"Pillow ≥ 10.1 is needed to write text on images ({exc}): upgrade Pillow") from exc


def _colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    fill = PALETTE[int(rng.integers(len(PALETTE)))]
    lum = [0.3 * r + 0.59 * g + 0.11 * b for r, g, b in PALETTE]
    f = lum[PALETTE.index(fill)]
    outline = PALETTE[int(np.argmax([abs(x - f) for x in lum]))]
    return fill, outline


def write_word(image: np.ndarray, word: str, rng: np.random.Generator, *, size: int | None = None) -> np.ndarray:
    """A copy of `image` with `word` written on it at a random place that fits.

    Args:
        image: uint8 (H, W, 3) RGB.
        word: the text; `_` starts a new line (see `display_text`).
        rng: where the position and colours come from.
        size: font size in pixels; default a sixth of the image's shorter side.

    Returns:
        uint8 (H, W, 3), the text in a palette colour with a one-pixel contrasting outline.
    """
    h, w = image.shape[:2]
    size = size or max(6, round(min(h, w) / 6))
    font = _font(size)
    stroke = max(1, size // 12)
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    text = display_text(word)
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, stroke_width=stroke, spacing=1)
    x = -left + int(rng.integers(0, max(w - (right - left), 0) + 1))
    y = -top + int(rng.integers(0, max(h - (bottom - top), 0) + 1))
    fill, outline = _colours(rng)
    draw.multiline_text((x, y), text, font=font, fill=fill, stroke_width=stroke, stroke_fill=outline, spacing=1)
    return np.asarray(canvas, dtype=np.uint8)


def _rng(key: int, name: str, index: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, key, zlib.crc32(name.encode()), index])


def _class_index(name: str) -> int:
    if name not in CLASS_NAMES:
        raise UnknownConcept(f"unknown Typographic-synth class {name!r}: use one of {', '.join(CLASS_NAMES)}")
    return CLASS_NAMES.index(name)


def render_attack(name: str, n: int, *, seed: int) -> TypoImages:
    """`n` images of class `name`, each with another class's name written on it.

    The images are `render_concept(name, n, seed=seed)`; the written class is drawn uniformly from
    the other eleven classes, per image.

    Raises:
        UnknownConcept: `name` is not a class.
        DatasetError: `n` or `seed` is negative.
    """
    true = _class_index(name)
    base = render_concept(name, n, seed=seed)
    written = np.empty(n, np.int64)
    for i in range(n):
        rng = _rng(_ATTACK_KEY, name, i, seed)
        other = int(rng.integers(len(CLASS_NAMES) - 1))
        written[i] = other + (other >= true)  # any class but the true one
        base[i] = write_word(base[i], CLASS_NAMES[written[i]], rng)
    return TypoImages(base, np.full(n, true, np.int64), written)


def _background(rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """Plain (one random colour) or CatFish-synth clutter, uint8 (size, size, 3)."""
    if rng.random() < 0.5:
        colour = rng.uniform(0.15, 0.85, 3).astype(np.float32)
        canvas = np.broadcast_to(colour, (size, size, 3)).copy()
    else:
        canvas = draw_background(size, rng)
    return np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_text(n: int, *, seed: int, words: tuple[str, ...] = TEXT_WORDS, size: int = IMAGE_SIZE) -> TypoImages:
    """The text concept: `n` images of one word each on a plain or cluttered background.

    Image i writes `words[i mod len(words)]`, so every word appears; no primitive is drawn.
    `size` is the square image side (64 for typo-mini; a CLIP harness renders at its input size).

    Raises:
        DatasetError: `n` or `seed` is negative, or no words.
    """
    _check_count(n, "the number of images")
    _check_seed(seed)
    if not words:
        raise DatasetError("render_text needs at least one word")
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        rng = _rng(_TEXT_KEY, "text", i, seed)
        out[i] = write_word(_background(rng, size), words[i % len(words)], rng)
    return TypoImages(out, None, None)


def _mixed(kind: str, n: int, seed: int) -> TypoImages:
    """`n` images over all classes in turn (image i is of class i mod 12)."""
    counts = [len(range(c, n, len(CLASS_NAMES))) for c in range(len(CLASS_NAMES))]
    parts = [render_typo(f"typo:{kind}:{c}", k, seed=seed) for c, k in zip(CLASS_NAMES, counts)]
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    labels = np.empty(n, np.int64)
    written = np.empty(n, np.int64) if kind == "attack" else None
    for c, part in enumerate(parts):
        images[c :: len(CLASS_NAMES)] = part.images
        labels[c :: len(CLASS_NAMES)] = c
        if written is not None:
            assert part.written is not None, "attack images record the class written on them"
            written[c :: len(CLASS_NAMES)] = part.written
    return TypoImages(images, labels, written)


def typo_set_names() -> list[str]:
    """Every Typographic-synth image-set name `render_typo` accepts."""
    per_class = [f"typo:{kind}:{c}" for kind in ("clean", "attack") for c in CLASS_NAMES]
    return ["typo:clean", "typo:attack", "typo:text", "typo:text:names", *per_class]


def render_typo(name: str, n: int, *, seed: int) -> TypoImages:
    """Render a Typographic-synth image set by name (see the module docstring).

    Args:
        name: `typo:clean[:CLASS]`, `typo:attack[:CLASS]`, `typo:text` or `typo:text:names`.
        n: number of images.
        seed: non-negative seed.

    Raises:
        UnknownConcept: not a Typographic-synth set (the message lists the forms).
        DatasetError: `n` or `seed` is negative.
    """
    prefix, kind, cls = (name.split(":", 2) + ["", ""])[:3]
    _check_count(n, "the number of images")
    _check_seed(seed)
    if prefix == "typo" and kind == "text" and cls in ("", "names"):
        return render_text(n, seed=seed, words=CLASS_NAMES if cls else TEXT_WORDS)
    if prefix == "typo" and kind in ("clean", "attack"):
        if not cls:
            return _mixed(kind, n, seed)
        if kind == "attack":
            return render_attack(cls, n, seed=seed)
        idx = _class_index(cls)
        return TypoImages(render_concept(cls, n, seed=seed), np.full(n, idx, np.int64), None)
    raise UnknownConcept(
        f"unknown Typographic-synth set {name!r}: use typo:clean[:CLASS], typo:attack[:CLASS], "
        "typo:text or typo:text:names"
    )


def make_typo_split(
    n_per_class: int, *, seed: int, text_share: float = 0.5, text_only_share: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """A labelled, shuffled training set in which the model can learn to read.

    Of each class's `n_per_class` images, a `text_share` carries the class's own name written on
    the CatFish-synth image and a `text_only_share` shows the name alone on a plain or cluttered
    background; the rest are plain CatFish-synth images. Which image gets what is drawn per image.

    Returns:
        `(images, labels)`: uint8 (N, H, W, 3) and int64 (N,) indices into `CLASS_NAMES`.

    Raises:
        DatasetError: a negative count or seed, or shares outside [0, 1] or summing above 1.
    """
    _check_count(n_per_class, "n_per_class")
    _check_seed(seed)
    if not (0.0 <= text_share and 0.0 <= text_only_share and text_share + text_only_share <= 1.0):
        raise DatasetError(f"text shares {text_share} + {text_only_share} must be non-negative and sum to at most 1")
    images, labels = [], []
    for c, cls in enumerate(CLASS_NAMES):
        base = render_concept(cls, n_per_class, seed=seed)
        for i in range(n_per_class):
            rng = _rng(_TRAIN_KEY, cls, i, seed)
            u = rng.random()
            if u < text_only_share:
                base[i] = write_word(_background(rng), cls, rng)
            elif u < text_only_share + text_share:
                base[i] = write_word(base[i], cls, rng)
        images.append(base)
        labels.append(np.full(n_per_class, c, np.int64))
    x, y = np.concatenate(images), np.concatenate(labels)
    perm = np.random.default_rng([seed, _TRAIN_KEY]).permutation(len(y))
    return x[perm], y[perm]
