"""Reading, hashing and finding model weights: local files, bundled files, library caches.

Weights are only ever read from disk (`torch.load(..., weights_only=True)` or safetensors); nothing
is downloaded. A model's identity in the catalog is `weights_sha256` of its state dict.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from catalog.errors import CircuitsError

__all__ = [
    "IMAGENET",
    "WeightsError",
    "check_file_sha256",
    "file_sha256",
    "find_cached",
    "imagenet_weights_file",
    "load_into",
    "read_state_dict",
    "weights_sha256",
]


class WeightsError(CircuitsError):
    """A weights file is missing, unreadable, or does not fit the model."""


def weights_sha256(module: nn.Module) -> str:
    """sha256 over the state dict: sorted keys, each with dtype, shape and tensor bytes.

    Deterministic across processes and devices (tensors are read on CPU).
    """
    h = hashlib.sha256()
    sd = module.state_dict()
    for key in sorted(sd):
        t = sd[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(f"|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist: check the path")
    try:
        if path.suffix == ".safetensors":
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                obj: Any = load_file(str(path), device="cpu")
            except SafetensorError as exc:
                raise WeightsError(f"cannot read weights file {path}: {exc}") from None
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, which would run arbitrary code: never.
        raise WeightsError(
            f"cannot read weights file {path}: it is not a state dict of tensors (only files that load "
            "with weights_only=True are accepted); save one with torch.save(model.state_dict(), PATH)"
        ) from None
    except (
        RuntimeError,
        EOFError,
        ValueError,
        OSError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
    ) as exc:  # garbage input
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(
            f"cannot read weights file {path} ({msg}): it must be a state dict saved with torch.save "
            "(loaded with weights_only=True) or a .safetensors file"
        ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict (a mapping of names to tensors)")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):  # saved from DataParallel / DDP
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_into(
    module: nn.Module,
    sd: dict[str, torch.Tensor],
    path: Path,
    *,
    name: str,
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> None:
    """Load a state dict into `module`, naming every missing, unexpected or misshapen key.

    Raises:
        WeightsError: the file's keys or shapes do not fit the model `name`.
    """
    if convert is not None:
        sd = convert(sd)
    own = module.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''})")
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])}{', …' if len(unexpected) > 3 else ''})"
            )
        if shapes:
            parts.append(f"{len(shapes)} of another shape (file vs model: {'; '.join(shapes[:2])})")
        raise WeightsError(
            f"weights file {path} does not fit {name}: "
            + ", ".join(parts)
            + ": pass weights saved from this architecture"
        )
    module.load_state_dict(sd, strict=False)


def _hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"


def find_cached(cache_names: Sequence[str]) -> Path | None:
    """The first cache file already on disk (torch hub checkpoints, or "hf:" Hugging Face hub globs)."""
    for name in cache_names:
        if name.startswith("hf:"):
            hits = sorted(glob.glob(str(_hf_hub_cache() / name[len("hf:") :])))
            if hits:
                return Path(hits[-1])
        else:
            path = Path(torch.hub.get_dir()) / "checkpoints" / name
            if path.is_file():
                return path
    return None


IMAGENET = "imagenet"  # `--weights imagenet`: the model's published ImageNet weights


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file_sha256(path: Path, expected: str, *, hint: str = "") -> None:
    """Raise `WeightsError` unless `path`'s bytes hash to `expected`."""
    got = file_sha256(path)
    if got != expected:
        raise WeightsError(
            f"weights file {path} has sha256 {got[:12]}…, expected {expected[:12]}… (a different or damaged file)"
            + (f": {hint}" if hint else "")
        )


def imagenet_weights_file(enum_ref: str) -> Path:
    """The file of torchvision weights `enum_ref` (e.g. "ResNet50_Weights.IMAGENET1K_V1") in
    torchvision's cache, `torch.hub.get_dir()/checkpoints/<file>`, downloaded there by torch hub
    when it is missing and the machine is online.

    Raises:
        WeightsError: the file is not cached and cannot be downloaded (one line naming the file
            and where to put it).
    """
    import urllib.error
    from urllib.parse import urlparse

    from torchvision import models

    cls_name, _, member = enum_ref.partition(".")
    entry = getattr(getattr(models, cls_name), member)
    filename = os.path.basename(urlparse(entry.url).path)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if path.is_file():
        return path
    try:
        # torchvision's own download (as `entry.get_state_dict()`), into the same cache file.
        torch.hub.load_state_dict_from_url(entry.url, progress=False, check_hash=False, weights_only=True)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = (str(getattr(exc, "reason", exc)).splitlines() or [type(exc).__name__])[0]
        raise WeightsError(
            f"{enum_ref} is not in torchvision's cache and cannot be downloaded ({reason}): "
            f"put {filename} (from {entry.url}) at {path}, or pass `weights=` FILE"
        ) from None
    if not path.is_file():
        raise WeightsError(
            f"torch hub did not leave {filename} at {path}: put it there by hand, or pass `weights=` FILE"
        )
    return path
