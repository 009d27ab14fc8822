"""A pixel budget checked from an image's header, before any pixel is decoded.

Pillow's `Image.open` reads only the header, so width × height is known before `load()`. A
decompression bomb (a 388 KB PNG of 20000 × 20000 pixels) or an absurd aspect ratio (a 235-byte
1 × 40000 PNG, which the resize to the model's input, sized by the short side, turns into
gigabytes) is refused there with a reason, and the caller skips the file like any unreadable one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["MAX_ASPECT", "MAX_PIXELS", "ImageTooLarge", "check_pixel_budget", "open_image"]

MAX_PIXELS = 50_000_000  # ~7070 × 7070: 150 MB as RGB uint8; larger than any photo a concept needs
# Long side / short side. A resize sized by the short side makes S × (S · aspect) pixels: at 256:1
# and a 224 input that is 12.8 M pixels (150 MB as float32 RGB); a 1 × 40000 strip would be 2 G.
MAX_ASPECT = 256.0


class ImageTooLarge(ValueError):
    """An image over the pixel budget or the aspect-ratio limit (refused before decoding)."""


def check_pixel_budget(
    width: int, height: int, *, max_pixels: int = MAX_PIXELS, max_aspect: float = MAX_ASPECT
) -> None:
    """Refuse an image size before decoding it.

    Raises:
        ImageTooLarge: empty, more than `max_pixels` pixels, or an aspect ratio beyond `max_aspect`.
    """
    if width < 1 or height < 1:
        raise ImageTooLarge(f"image is {width}×{height}: no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}×{height} = {width * height / 1e6:.0f} M pixels, over the budget of "
            f"{max_pixels / 1e6:.0f} M: downscale it first"
        )
    aspect = max(width, height) / min(width, height)
    if aspect > max_aspect:
        raise ImageTooLarge(
            f"image is {width}×{height}: aspect ratio {aspect:.0f}:1 is beyond {max_aspect:g}:1; crop it"
        )


@contextmanager
def open_image(path: str | Path | IO[bytes]) -> Iterator:
    """`PIL.Image.open` with the pixel budget checked on the header (before `load()`).

    Pillow's own bomb error becomes `ImageTooLarge` too, so callers catching ValueError skip the
    file with a reason instead of aborting.

    Raises:
        ImageTooLarge: see `check_pixel_budget`. Pillow's errors for unreadable files otherwise.
    """
    from PIL import Image

    try:
        im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"refused as a decompression bomb: {exc}") from None
    with im:
        check_pixel_budget(*im.size)
        yield im
