"""Concept image sets: read from a folder or rendered from a bundled dataset, with their hashes.

An `ImageSet` is what a run records as provenance: the images in a fixed order, each file's
sha256, and one sha256 for the whole set. Reading never corrupts silently:

- every colour mode is converted to 8-bit RGB exactly: 16-bit grey is scaled by 255/65535
  (PIL alone clips it to almost white), 16-bit RGB keeps its high byte, palette images go
  through their palette, CMYK uses R = (255−C)(255−K)/255, grey is repeated, and images with
  transparency are composited over a background (white by default) with a note;
- EXIF orientation is applied (a phone photo is used the way it is shown);
- every file found but not used is reported in `ImageSet.unused` (kind `format`, `folder` or
  `unreadable`), and `ImageSet.summary()` says it in one line;
- tiny (< 16 px) and huge (> 4096 px) images, multi-frame files and transparency get a note;
- only regular files are read (a FIFO or device named `x.png` is skipped with a reason, never
  opened for a blocking read), and each file is read once, in bounded chunks, hashed as it is
  read and decoded from those bytes; a file over `MAX_FILE_BYTES` is skipped before reading.

A folder with no usable image is an error.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from catalog.errors import CircuitsError
from catalog.image_set_names import image_source
from ingest.pixel_budget import open_image

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_FILE_BYTES",
    "ImageSet",
    "ImageSetError",
    "UnusedFile",
    "read_image_dir",
    "rendered_image_set",
    "to_rgb",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
WHITE = (255, 255, 255)
TINY_SIDE = 16  # smaller images are upscaled by a large factor to any CNN input size
HUGE_SIDE = 4096  # larger images cost time and memory to read and are downscaled by a large factor
MAX_FILE_BYTES = 256 << 20  # above any image within the pixel budget (50 M px, 16-bit RGBA TIFF ≈ 400 MB aside)
_CHUNK = 1 << 20


class ImageSetError(CircuitsError):
    """A concept's images cannot be read."""


@dataclass(frozen=True)
class UnusedFile:
    """A file (or sub-folder) found in an image folder but not used.

    Attributes:
        path: the file or folder.
        kind: "format" (not an image suffix), "folder" (a sub-folder; use recursive=True) or
            "unreadable" (an image suffix that cannot be decoded or converted).
        detail: why, for people.
    """

    path: str
    kind: str
    detail: str


@dataclass(frozen=True)
class ImageSet:
    """Images of one concept in a fixed order.

    Attributes:
        name: what the set is, e.g. "dir:/data/cats" or "catfish:disc_star".
        images: RGB uint8 arrays (H, W, 3), possibly of different sizes for folders.
        sha256s: per-image hash (file bytes for folders, pixel bytes for rendered sets).
        sources: per-image source (file path, or "catfish:NAME#i" for rendered sets).
        skipped: (path, reason) of image files that could not be read (the `unreadable` part
            of `unused`).
        labels: per-image class index where known (rendered class sets), else None.
        unused: every file and sub-folder found but not used, with why.
        notes: remarks on images that were used (tiny or huge, transparency, several frames).
    """

    name: str
    images: tuple[np.ndarray, ...]
    sha256s: tuple[str, ...]
    sources: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = field(default=())
    labels: tuple[int, ...] | None = None
    unused: tuple[UnusedFile, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())

    @property
    def sha256(self) -> str:
        """One hash for the whole set: the ordered per-image hashes."""
        return hashlib.sha256("\n".join(self.sha256s).encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.images)

    def summary(self) -> str | None:
        """One line on the files not used, e.g. `not used: 2 unreadable (a.png, b.png), 1
        sub-folder (pass `recursive=`)`; None when every file found was used."""
        if not self.unused:
            return None
        parts = []
        for kind, label in (("unreadable", "unreadable"), ("format", "not an image format"), ("folder", "sub-folder")):
            items = [u for u in self.unused if u.kind == kind]
            if not items:
                continue
            names = ", ".join(Path(u.path).name for u in items[:3]) + (", …" if len(items) > 3 else "")
            plural = "s" if kind == "folder" and len(items) > 1 else ""
            parts.append(f"{len(items)} {label}{plural} ({names})")
        hint = " (pass `recursive=` to read sub-folders)" if any(u.kind == "folder" for u in self.unused) else ""
        return f"not used: {'; '.join(parts)}{hint}; using {len(self)} image(s)"


def _scale16(a: np.ndarray) -> np.ndarray:
    """16-bit samples → 8-bit, rounded: v · 255 / 65535."""
    return np.round(a.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)


def _composite(rgb: np.ndarray, alpha: np.ndarray, background: Sequence[int]) -> np.ndarray:
    """Straight alpha over a solid background: rgb·a + bg·(1 − a), rounded. (H, W, 3) uint8."""
    a = alpha.astype(np.float64)[:, :, None] / 255.0
    bg = np.asarray(background, dtype=np.float64).reshape(1, 1, 3)
    return np.round(rgb.astype(np.float64) * a + bg * (1.0 - a)).astype(np.uint8)


def to_rgb(image: Image.Image, *, background: Sequence[int] = WHITE) -> np.ndarray:
    """Any PIL image → RGB uint8 (H, W, 3), exactly (see the module docstring).

    Raises:
        ImageSetError: a mode that has no faithful RGB reading (e.g. float values outside
            [0, 1], 32-bit integers above 16 bits, LAB).
    """
    mode = image.mode
    if mode.startswith("I;16"):
        grey = _scale16(np.asarray(image))
    elif mode == "I":  # 32-bit signed: PNG/TIFF 16-bit data in some readers
        a = np.asarray(image)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageSetError(f"32-bit integer image with values {a.min()}…{a.max()}: save it as 8- or 16-bit")
        grey = _scale16(a)
    elif mode == "F":
        a = np.asarray(image, dtype=np.float64)
        if a.size and not (np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0):
            raise ImageSetError("float image with values outside [0, 1]: save it as 8- or 16-bit")
        grey = np.round(a * 255.0).astype(np.uint8)
    elif (
        mode in ("RGBA", "LA", "PA", "P", "RGBa", "La")
        or (mode == "RGB" and "transparency" in image.info)
        or (mode == "L" and "transparency" in image.info)
    ):
        rgba = np.asarray(image.convert("RGBA"))  # palettes and tRNS keys resolved by PIL
        if rgba[:, :, 3].min() == 255:
            return np.ascontiguousarray(rgba[:, :, :3])
        return _composite(rgba[:, :, :3], rgba[:, :, 3], background)
    elif mode in ("RGB", "L", "1", "CMYK", "YCbCr"):
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    else:
        raise ImageSetError(f"colour mode {mode} has no faithful RGB reading here: save the image as RGB PNG")
    return np.repeat(grey[:, :, None], 3, axis=2)


def has_transparency(image: Image.Image) -> bool:
    """Whether `to_rgb` composites this image over a background (some pixel is not opaque)."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return bool(np.asarray(image.convert("RGBA"))[:, :, 3].min() < 255)
    return False


def _walk(folder: Path, recursive: bool) -> tuple[list[Path], list[UnusedFile]]:
    """Image files (sorted by path below `folder`) and everything else found."""
    files: list[Path] = []
    unused: list[UnusedFile] = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs.sort()
        here = Path(root)
        if not recursive:
            unused += [UnusedFile(str(here / d), "folder", "a sub-folder (pass `recursive=`)") for d in dirs]
            dirs.clear()
        for name in sorted(names):
            path = here / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
            else:
                unused.append(
                    UnusedFile(
                        str(path), "format", f"suffix {path.suffix or '(none)'} is not {'/'.join(IMAGE_SUFFIXES)}"
                    )
                )
    files.sort(key=lambda p: p.relative_to(folder).parts)
    return files, unused


class _NotRead(Exception):
    """Internal: a file skipped before decoding (not a regular file, too large)."""


def _file_bytes(file: Path) -> tuple[bytes, str]:
    """The file's bytes and their sha256, read once in 1 MiB chunks.

    Opened non-blocking and checked with `fstat` on the open descriptor (no window between the
    check and the read): a FIFO, device or socket is refused, and so is a file over
    `MAX_FILE_BYTES` (a 4 GB sparse file with a PNG header is not hashed whole).
    """
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
            raise _NotRead(f"not a regular file ({kind}): skipped without reading it")
        if st.st_size > MAX_FILE_BYTES:
            raise _NotRead(
                f"{st.st_size / (1 << 20):.0f} MiB is more than an image file may be ({MAX_FILE_BYTES >> 20} MiB)"
            )
        digest, parts, size = hashlib.sha256(), [], 0
        while chunk := os.read(fd, _CHUNK):
            size += len(chunk)
            if size > MAX_FILE_BYTES:  # it grew while being read
                raise _NotRead(f"more than {MAX_FILE_BYTES >> 20} MiB (the file grew while it was read)")
            digest.update(chunk)
            parts.append(chunk)
        return b"".join(parts), digest.hexdigest()
    finally:
        os.close(fd)


def _read_one(file: Path, background: Sequence[int], data: bytes) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with open_image(
            io.BytesIO(data)
        ) as im:  # pixel budget and aspect ratio checked on the header (ingest.pixel_budget)
            frames = getattr(im, "n_frames", 1)
            im.load()
            upright = ImageOps.exif_transpose(im)
            if has_transparency(upright):
                notes.append(f"{file.name}: transparent pixels composited over RGB {tuple(background)}")
            rgb = to_rgb(upright, background=background)
    if frames > 1:
        notes.append(f"{file.name}: first of {frames} frames used")
    h, w = rgb.shape[:2]
    if min(h, w) < TINY_SIDE:
        notes.append(f"{file.name}: tiny ({w}×{h} px): resizing it to a model's input size enlarges it a lot")
    elif max(h, w) > HUGE_SIDE:
        notes.append(f"{file.name}: huge ({w}×{h} px): resizing it to a model's input size shrinks it a lot")
    return rgb, notes


def read_image_dir(path: str | Path, *, recursive: bool = False, background: Sequence[int] = WHITE) -> ImageSet:
    """Read every image file of a folder (PNG, JPEG, WebP, BMP, GIF, TIFF), sorted by path.

    Args:
        path: the folder.
        recursive: read sub-folders too (otherwise they are reported as unused).
        background: RGB that transparent pixels are composited over.

    Returns:
        The `ImageSet`; `unused` lists every file not used and why, `notes` remarks on used ones.

    Raises:
        ImageSetError: the folder is missing, not a folder, has no image files, or none of
            them can be read.
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ImageSetError(f"image folder {folder} does not exist: check the path given to `images=`")
    if not folder.is_dir():
        raise ImageSetError(f"{folder} is not a folder: `images=` takes a folder of image files")
    files, unused = _walk(folder, recursive)
    if not files:
        found = (
            f" (found {len(unused)} other entries: {ImageSet('', (), (), (), unused=tuple(unused)).summary()})"
            if unused
            else ""
        )
        raise ImageSetError(
            f"no image files ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) in {folder}{found}: put the concept's "
            "example images there (or use `dataset=` catfish:NAME)"
        )
    images, hashes, sources, notes = [], [], [], []
    for file in files:
        try:
            data, sha = _file_bytes(file)
            rgb, file_notes = _read_one(file, background, data)
        except (
            _NotRead,
            UnidentifiedImageError,
            OSError,
            ValueError,
            SyntaxError,
            ImageSetError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as exc:
            detail = str(exc) if isinstance(exc, _NotRead) else f"{type(exc).__name__}: {exc}"
            unused.append(UnusedFile(str(file), "unreadable", detail))
            continue
        images.append(rgb)
        hashes.append(sha)
        sources.append(str(file.resolve()))
        notes += file_notes
    unreadable = [u for u in unused if u.kind == "unreadable"]
    if not images:
        names = ", ".join(Path(u.path).name for u in unreadable[:5]) + (", …" if len(unreadable) > 5 else "")
        raise ImageSetError(
            f"none of the {len(files)} image files in {folder} can be read ({names}): "
            "replace them with valid image files"
        )
    return ImageSet(
        f"dir:{folder.resolve()}",
        tuple(images),
        tuple(hashes),
        tuple(sources),
        skipped=tuple((u.path, u.detail) for u in unreadable),
        unused=tuple(unused),
        notes=tuple(notes),
    )


def rendered_image_set(name: str, images: np.ndarray, labels: np.ndarray | None = None) -> ImageSet:
    """Wrap rendered images (N, H, W, 3) uint8 as an ImageSet hashed by pixel content."""
    assert images.ndim == 4 and images.shape[-1] == 3 and images.dtype == np.uint8, images.shape
    hashes = tuple(hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images)
    sources = tuple(image_source(name, i) for i in range(len(images)))
    lab = None if labels is None else tuple(int(x) for x in labels)
    return ImageSet(name, tuple(images), hashes, sources, (), lab)
