"""How images become a model's input, as part of the model's spec (docs/architecture.md, "Preprocessing").

A `Preprocessing` says: the input size (or keep each image's own size), how to get there
(`crop`: shorter side to the size, then the centre; `stretch`: both sides to the size), the
per-channel mean/std (or none), and the channel count (3: RGB, 1: luminance). Zoo models carry
their published one; a user model that declares nothing gets `Preprocessing()`: no resize, no
normalisation, [0, 1] RGB floats at the images' own size. The tool never assumes ImageNet
statistics for a model it does not know.

`preprocess(spec_or_preprocessing, images)` applies it. `Preprocessing.to_params()` is the JSON
stored in a run's provenance (and part of its provenance key); `from_params` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ingest.zoo.errors import PreprocessingError

if TYPE_CHECKING:
    from ingest.zoo.specs import ModelSpec

__all__ = [
    "IMAGENET",
    "RESIZE_POLICIES",
    "Preprocessing",
    "PreprocessingError",
    "parse_input_size",
    "parse_normalize",
    "preprocess",
]

RESIZE_POLICIES = ("crop", "stretch")
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# ITU-R 601-2 luma, as PIL's convert("L"): how 3-channel images become 1-channel inputs.
LUMA = (0.299, 0.587, 0.114)
OPTIONS_HINT = "`input_size=` N (with `resize=` crop|stretch), `normalize=` none|imagenet|M,M,M:S,S,S, `channels=` 1|3"


@dataclass(frozen=True)
class Preprocessing:
    """Images → model input.

    Attributes:
        size: square input side in pixels; None keeps each image's size (then all images of a
            batch must share one size).
        resize: "crop" (shorter side to `size`, antialiased bilinear, then the centre) or
            "stretch" (both sides to `size`, the aspect ratio is not kept). Ignored when size is None.
        mean: per-channel mean subtracted from [0, 1] values; None: no normalisation.
        std: per-channel std divided by (given with mean, or neither).
        channels: 3 (RGB) or 1 (luminance, ITU-R 601-2 as PIL's "L").
    """

    size: int | None = None  # None: the tool cannot know a user model's size, so it keeps the images'
    resize: str = "crop"  # crop keeps the aspect ratio, as torchvision's Resize + CenterCrop
    mean: tuple[float, ...] | None = None  # None: the tool cannot know a user model's statistics
    std: tuple[float, ...] | None = None
    channels: int = 3  # most vision models read RGB

    def __post_init__(self) -> None:
        if self.size is not None and (isinstance(self.size, bool) or int(self.size) < 1):
            raise PreprocessingError(f"input size must be a positive integer or keep (got {self.size!r})")
        if self.resize not in RESIZE_POLICIES:
            raise PreprocessingError(f"unknown resize policy {self.resize!r}: use {' or '.join(RESIZE_POLICIES)}")
        if self.channels not in (1, 3):
            raise PreprocessingError(f"channels must be 1 or 3 (got {self.channels!r})")
        if (self.mean is None) != (self.std is None):
            raise PreprocessingError("give mean and std together (or neither: `normalize=` none)")
        if self.mean is not None and self.std is not None:
            mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
            if len(mean) != len(std) or len(mean) not in (1, self.channels):
                raise PreprocessingError(
                    f"mean has {len(mean)} values and std {len(std)}, for {self.channels} channel(s): "
                    "give one value per channel (or one for all)"
                )
            if any(s <= 0 for s in std):
                raise PreprocessingError(f"std values must be positive (got {std})")
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)
        if self.size is not None:
            object.__setattr__(self, "size", int(self.size))

    def with_overrides(
        self,
        *,
        input_size: int | str | None = None,
        resize: str | None = None,
        normalize: str | tuple[Sequence[float], Sequence[float]] | None = None,
        channels: int | None = None,
    ) -> Preprocessing:
        """This preprocessing with the given settings replaced; None keeps a setting.

        Args:
            input_size: an int, or "keep" for each image's own size.
            resize: "crop" or "stretch".
            normalize: "none", "imagenet", "M,M,M:S,S,S", or a (mean, std) pair.
            channels: 1 or 3.
        """
        changes: dict[str, Any] = {}
        if input_size is not None:
            changes["size"] = parse_input_size(input_size)
        if resize is not None:
            changes["resize"] = resize
        if normalize is not None:
            changes["mean"], changes["std"] = parse_normalize(normalize)
        if channels is not None:
            changes["channels"] = int(channels)
        return replace(self, **changes) if changes else self

    def to_params(self) -> dict[str, Any]:
        """JSON-ready form stored in a run's provenance."""
        return {
            "size": self.size,
            "resize": self.resize,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "channels": self.channels,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Preprocessing:
        """Read back `to_params()` (e.g. a stored run's `params["preprocessing"]`)."""
        return cls(
            size=params.get("size"),
            resize=params.get("resize", "crop"),
            mean=None if params.get("mean") is None else tuple(params["mean"]),
            std=None if params.get("std") is None else tuple(params["std"]),
            channels=int(params.get("channels", 3)),
        )

    def describe(self) -> str:
        """One line for people, e.g. `224 px (crop), mean/std (0.485, …), RGB`."""
        size = "own size" if self.size is None else f"{self.size} px ({self.resize})"
        norm = "no normalisation" if self.mean is None else f"mean {_fmt(self.mean)} std {_fmt(self.std)}"
        return f"{size}, {norm}, {'RGB' if self.channels == 3 else 'grey'} [0, 1]"

    def example(self, batch: int = 2, *, size: int = 224, seed: int = 0) -> torch.Tensor:
        """A random input batch of this preprocessing's shape (`size` when it keeps image sizes)."""
        side = self.size or size
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(batch, self.channels, side, side, generator=gen)  # (B, C, S, S)


def _fmt(values: tuple[float, ...] | None) -> str:
    return "none" if values is None else "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def parse_input_size(text: int | str) -> int | None:
    """ "keep" → None (each image's own size); "224" or 224 → 224."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif str(text).strip().lower() in ("keep", "own", "none"):
        return None
    else:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise PreprocessingError(f"`input_size=` takes a number of pixels or keep (got {text!r})") from None
    if value < 1:
        raise PreprocessingError(f"`input_size=` must be at least 1 (got {value})")
    return value


def parse_normalize(
    spec: str | tuple[Sequence[float], Sequence[float]],
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """ "none" → (None, None); "imagenet" → ImageNet's mean/std; "M,M,M:S,S,S" → those values.

    A (mean, std) pair of sequences is passed through as tuples.
    """
    if not isinstance(spec, str):
        mean, std = spec
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    text = spec.strip().lower()
    if text == "none":
        return None, None
    if text == "imagenet":
        return IMAGENET
    mean_text, sep, std_text = text.partition(":")
    try:
        if not sep:
            raise ValueError
        mean = tuple(float(v) for v in mean_text.split(",") if v.strip())
        std = tuple(float(v) for v in std_text.split(",") if v.strip())
    except ValueError:
        raise PreprocessingError(
            f"`normalize=` takes none, imagenet or MEAN:STD as comma lists, e.g. 0.5,0.5,0.5:0.25,0.25,0.25 (got {spec!r})"
        ) from None
    if not mean or not std:
        raise PreprocessingError(f"`normalize=` {spec!r} has an empty mean or std")
    return mean, std


def _to_chw(image: Any, i: int) -> torch.Tensor:
    """One image → float (3, H, W) in [0, 1]. uint8/uint16 arrays are scaled by their range,
    float arrays must already be in [0, 1]; PIL images of any mode are converted exactly."""
    from ingest.images import ImageSetError, to_rgb

    arr: np.ndarray
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        try:
            arr = to_rgb(image)
        except ImageSetError as exc:
            raise PreprocessingError(f"image {i}: {exc}") from None
    else:
        arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise PreprocessingError(f"image {i} has shape {arr.shape}: expected (H, W, 3) RGB or (H, W) grey")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    elif arr.dtype in (np.float32, np.float64):
        if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
            raise PreprocessingError(f"image {i} is a float array outside [0, 1]: scale it to [0, 1] first")
        scale = 1.0
    else:
        raise PreprocessingError(
            f"image {i} has dtype {arr.dtype}: give uint8/uint16 arrays, float arrays in [0, 1], or PIL images"
        )
    t = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32)).permute(2, 0, 1)  # (3, H, W)
    return t.div_(scale) if scale != 1.0 else t


def _resize(t: torch.Tensor, size: int, policy: str) -> torch.Tensor:
    """(3, H, W) → (3, size, size): `crop` resizes the shorter side then crops the centre."""
    _, h, w = t.shape
    if (h, w) == (size, size):
        return t
    if policy == "stretch":
        return F.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    t = F.interpolate(t[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return t[:, top : top + size, left : left + size]


def _items(images: Any) -> list[Any]:
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, np.ndarray) or hasattr(images, "convert"):
        return [images]
    return list(images)


def preprocess(spec: ModelSpec | Preprocessing, images: Any) -> torch.Tensor:
    """Images → the model's input, as the model's preprocessing says.

    Args:
        spec: a model spec (its `preprocessing` is used) or a `Preprocessing`.
        images: PIL images (any mode), uint8/uint16 arrays (H, W, 3) or (H, W), float arrays in
            [0, 1], or one array (N, H, W, 3).

    Returns:
        float32 tensor (N, C, S, S) on CPU (C = channels; S = size, or the images' own H, W).

    Raises:
        PreprocessingError: no images, an image it cannot read, or images of different sizes
            while the preprocessing keeps sizes (the message names the options that fix it).
    """
    pp = spec if isinstance(spec, Preprocessing) else spec.preprocessing
    assert pp is not None, "ModelSpec.__post_init__ always sets preprocessing"
    items = _items(images)
    if not items:
        raise PreprocessingError("no images to preprocess")
    chw = [_to_chw(im, i) for i, im in enumerate(items)]
    if pp.size is not None:
        chw = [_resize(t, pp.size, pp.resize) for t in chw]
    else:
        sizes = sorted({tuple(t.shape[1:]) for t in chw})
        if len(sizes) > 1:
            shown = ", ".join(f"{h}×{w}" for h, w in sizes[:4]) + (", …" if len(sizes) > 4 else "")
            raise PreprocessingError(
                f"the images have {len(sizes)} different sizes ({shown}) and this model's preprocessing keeps "
                f"each image's size: give {OPTIONS_HINT.split(', `normalize=`')[0]}, declare the model's "
                "preprocessing, or make the images one size"
            )
    x = torch.stack(chw)  # (N, 3, H, W)
    if pp.channels == 1:
        x = (x * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)  # (N, 1, H, W)
    if pp.mean is not None and pp.std is not None:
        mean = torch.tensor(pp.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(pp.std, dtype=torch.float32).view(1, -1, 1, 1)
        x = (x - mean) / std
    return x.contiguous()
