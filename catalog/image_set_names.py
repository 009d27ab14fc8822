"""Names of image sets and of their images: one grammar, one parser (torch-free).

A rendered image set is named `KIND:NAME#seed=S` (options after the seed joined by `&`, e.g.
`typo:text#seed=3&size=64`) and image i of it has the source `KIND:NAME#seed=S#i`; a folder of
files is `dir:/path/to/NAME` (each image's source is its file path). `KIND` is the dataset
(`catfish`, `typo`, `attack` for a typographic attack of another set). `image_set_name` writes
these names and `parse_image_set_name` reads them back, so the catalog, the ingest and the read
side agree on one spelling.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["ImageSetName", "image_set_name", "image_source", "parse_image_set_name"]


@dataclass(frozen=True)
class ImageSetName:
    """A parsed image-set name or image source.

    Attributes:
        kind: the dataset ("catfish", "typo", "attack", "dir"), or "" for a name without one.
        name: what follows `KIND:` up to the first `#` (a folder's path for "dir").
        seed: the rendering seed, when named.
        options: other `key=value` options after the seed (e.g. {"size": "64"}).
        index: the image's position in its set, for an image source (`…#i`).
    """

    kind: str
    name: str
    seed: int | None = None
    options: dict[str, str] = field(default_factory=dict)
    index: int | None = None

    @property
    def concept(self) -> str:
        """The concept the set stands for: a folder's last part, else `name` (`catfish:stripes#seed=1` → stripes)."""
        if self.kind == "dir":
            return os.path.basename(self.name.rstrip("/\\")) or self.name
        return self.name.split("#", 1)[0]

    @property
    def set_name(self) -> str:
        """The image set's name (without the image index)."""
        return image_set_name(self.kind, self.name, self.seed, **self.options)


def image_set_name(kind: str, name: str, seed: int | None = None, **options: object) -> str:
    """`KIND:NAME#seed=S[&key=value…]` (or `KIND:NAME`, or `NAME` without a kind)."""
    text = f"{kind}:{name}" if kind else name
    if seed is None:
        return text
    extra = "".join(f"&{key}={value}" for key, value in options.items())
    return f"{text}#seed={seed}{extra}"


def image_source(set_name: str, index: int) -> str:
    """The source of image `index` of a rendered set: `SET#i`."""
    return f"{set_name}#{index}"


def parse_image_set_name(text: str) -> ImageSetName:
    """Read an image-set name or image source (`catfish:stripes#seed=0#3`, `dir:/data/cats`).

    Parts this grammar does not know are kept in `name`, so any string parses: a name without
    `KIND:` has kind "", one without `#seed=` has no seed.
    """
    kind, sep, rest = text.partition(":")
    if not sep or not kind.isidentifier():
        kind, rest = "", text
    if kind == "dir":
        return ImageSetName(kind, rest)
    name, *parts = rest.split("#")
    seed, options, index = None, {}, None
    for part in parts:
        if part.startswith("seed=") and seed is None:
            head, *more = part.split("&")
            value = head.removeprefix("seed=")
            if not value.lstrip("-").isdigit():
                return ImageSetName(kind, rest)
            seed = int(value)
            options = dict(item.partition("=")[::2] for item in more)
        elif part.isdigit() and index is None and seed is not None:
            index = int(part)
        else:  # not this grammar: keep the text whole
            return ImageSetName(kind, rest)
    return ImageSetName(kind, name, seed, options, index)
