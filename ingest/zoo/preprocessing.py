"""Images to a model's input: resized (shorter side, antialiased), centre-cropped, scaled to
[0, 1] and normalised with the spec's mean and std.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ingest.zoo.specs import ModelSpec, ZooError

__all__ = ["preprocess"]


def _to_chw(image: Any, i: int) -> torch.Tensor:
    """One image → float (3, H, W) in [0, 1]."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ZooError(f"image {i} has dtype {arr.dtype}: give uint8 RGB (H, W, 3) arrays or PIL images")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ZooError(f"image {i} has shape {arr.shape}: expected (H, W, 3)")
    t = torch.from_numpy(arr[:, :, :3].copy()).permute(2, 0, 1)  # (3, H, W) uint8; copy: PIL arrays are read-only
    return t.float().div_(255.0)


def _resize_center_crop(t: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to `size` (bilinear, antialiased), then crop the centre. (3, size, size)"""
    _, h, w = t.shape
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        t = F.interpolate(t[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
        top, left = (nh - size) // 2, (nw - size) // 2
        t = t[:, top:top + size, left:left + size]
    return t


def preprocess(spec: ModelSpec, images: Any) -> torch.Tensor:
    """Images → the model's input: resized, scaled to [0, 1], normalised.

    Args:
        spec: the model's spec (input size, mean, std).
        images: a list of PIL images or uint8 RGB arrays (H, W, 3), or one uint8 array
            (N, H, W, 3). Other sizes are resized (shorter side to `input_size`) and centre-cropped.

    Returns:
        float32 tensor (N, 3, input_size, input_size) on CPU.

    Raises:
        ZooError: no images, or an image that is not uint8 RGB.
    """
    if isinstance(images, np.ndarray) and images.ndim == 4:
        items: Sequence[Any] = list(images)
    elif isinstance(images, np.ndarray) or hasattr(images, "convert"):
        items = [images]
    else:
        items = list(images)
    if not items:
        raise ZooError("no images to preprocess")
    x = torch.stack([_resize_center_crop(_to_chw(im, i), spec.input_size) for i, im in enumerate(items)])
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std  # (N, 3, S, S)
