"""The EfficientNet walkthrough's photographs (scikit-image's bundled public-domain data) and their
views, as `--dataset photo:NAME` image sets (`photo:cat`, `photo:espresso`, …)."""

from __future__ import annotations

import numpy as np

from catalog.errors import CircuitsError

__all__ = ["PHOTOS", "SIDE", "WalkthroughError", "photo", "photo_image_set", "views"]

# concept -> (scikit-image loader, ImageNet classes the model may rightly give the whole photo)
PHOTOS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cat": ("chelsea", ("Egyptian cat", "tabby", "tiger cat")),
    "espresso": ("coffee", ("espresso", "cup")),
    "rocket": ("rocket", ("missile", "projectile", "space shuttle")),
    "motorcycle": ("stereo_motorcycle", ("moped", "motor scooter")),
}
SIDE = 224


class WalkthroughError(CircuitsError):
    """The walkthrough cannot run (missing extra) or the model misreads a photograph."""


def photo(name: str) -> np.ndarray:
    """A scikit-image bundled photograph as RGB uint8 (H, W, 3) (only files shipped in the wheel)."""
    try:
        from skimage import data
    except ModuleNotFoundError:
        raise WalkthroughError(
            "scikit-image is not installed: pip install 'visual-circuit-catalog[pretrained]'"
        ) from None
    loader = getattr(data, name)
    img = loader()
    img = img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disparity)
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, (name, img.shape, img.dtype)
    return img


def photo_image_set(concept: str, n: int = 8, *, seed: int = 0):
    """`--dataset photo:CONCEPT`: `n` views of the walkthrough's photograph of CONCEPT (an ImageSet).

    Raises:
        WalkthroughError: an unknown concept, or scikit-image missing.
    """
    from ingest.images import rendered_image_set

    if concept not in PHOTOS:
        raise WalkthroughError(f"unknown photo {concept!r}: use photo:{', photo:'.join(PHOTOS)}")
    name = f"photo:{concept}#views={n},seed={seed}"
    return rendered_image_set(name, views(photo(PHOTOS[concept][0]), n, seed=seed))


def views(img: np.ndarray, n: int, *, seed: int, side: int = SIDE) -> np.ndarray:
    """`n` square crops (60–100 % of the shorter side, random position), every other one mirrored,
    resized to `side` (antialiased). uint8 (n, side, side, 3)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    out = np.empty((n, side, side, 3), np.uint8)
    for i in range(n):
        s = int(round(min(h, w) * rng.uniform(0.6, 1.0)))
        top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        crop = Image.fromarray(img[top : top + s, left : left + s]).resize((side, side), Image.Resampling.BICUBIC)
        arr = np.asarray(crop)
        out[i] = arr[:, ::-1] if i % 2 else arr
    return out
