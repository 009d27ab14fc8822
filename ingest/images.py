"""Concept image sets: read from a folder or rendered from a bundled dataset, with their hashes.

An `ImageSet` is what a run records as provenance: the images in a fixed order, each file's
sha256, and one sha256 for the whole set. Unreadable files are skipped and reported by name;
a folder with no readable image is an error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from catalog.errors import CircuitsError
from ingest.pixel_budget import open_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageSetError(CircuitsError):
    """A concept's images cannot be read."""


@dataclass(frozen=True)
class ImageSet:
    """Images of one concept in a fixed order.

    Attributes:
        name: what the set is, e.g. "dir:/data/cats" or "catfish:disc_star".
        images: RGB uint8 arrays (H, W, 3), possibly of different sizes for folders.
        sha256s: per-image hash (file bytes for folders, pixel bytes for rendered sets).
        sources: per-image source (file path, or "catfish:NAME#i" for rendered sets).
        skipped: (path, reason) of files that could not be read.
        labels: per-image class index where known (rendered class sets), else None.
    """

    name: str
    images: tuple[np.ndarray, ...]
    sha256s: tuple[str, ...]
    sources: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = field(default=())
    labels: tuple[int, ...] | None = None

    @property
    def sha256(self) -> str:
        """One hash for the whole set: the ordered per-image hashes."""
        return hashlib.sha256("\n".join(self.sha256s).encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.images)


def read_image_dir(path: str | Path) -> ImageSet:
    """Read every PNG/JPEG file of a folder (sorted by name, not recursive).

    Raises:
        ImageSetError: the folder is missing, not a folder, has no image files, or none of
            them can be read.
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ImageSetError(f"image folder {folder} does not exist: check the path given to --images")
    if not folder.is_dir():
        raise ImageSetError(f"{folder} is not a folder: --images takes a folder of PNG/JPEG files")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageSetError(
            f"no PNG/JPEG files in {folder}: put the concept's example images there "
            "(or use --dataset catfish:NAME)"
        )
    images, hashes, sources, skipped = [], [], [], []
    for file in files:
        data = file.read_bytes()
        try:
            with open_image(file) as im:  # pixel budget checked on the header (ingest.pixel_budget)
                im.load()
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            skipped.append((str(file), f"{type(exc).__name__}: {exc}"))
            continue
        images.append(rgb)
        hashes.append(hashlib.sha256(data).hexdigest())
        sources.append(str(file.resolve()))
    if not images:
        names = ", ".join(Path(p).name for p, _ in skipped[:5]) + (", …" if len(skipped) > 5 else "")
        raise ImageSetError(
            f"none of the {len(files)} image files in {folder} can be read ({names}): "
            "replace them with valid PNG/JPEG files"
        )
    return ImageSet(f"dir:{folder.resolve()}", tuple(images), tuple(hashes), tuple(sources), tuple(skipped))


def rendered_image_set(name: str, images: np.ndarray, labels: np.ndarray | None = None) -> ImageSet:
    """Wrap rendered images (N, H, W, 3) uint8 as an ImageSet hashed by pixel content."""
    assert images.ndim == 4 and images.shape[-1] == 3 and images.dtype == np.uint8, images.shape
    hashes = tuple(hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images)
    sources = tuple(f"{name}#{i}" for i in range(len(images)))
    lab = None if labels is None else tuple(int(x) for x in labels)
    return ImageSet(name, tuple(images), hashes, sources, (), lab)
