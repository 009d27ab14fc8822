"""Small torch helpers every hook site shares: scoped hooks, device resolution, the channel axis.

with scoped_hooks(model, {"mixed4a": zero_channels}):   # removed on exit, even on error
    logits = model(x)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from catalog.errors import CircuitsError

__all__ = ["DeviceError", "channel_dim", "evaluating_on", "resolve_device", "scoped_hooks"]

Hook = Callable[..., Any]


class DeviceError(CircuitsError):
    """A device name that is not valid or not available here."""


@contextmanager
def scoped_hooks(
    model: nn.Module,
    forward: Mapping[str, Hook] | None = None,
    *,
    pre: Mapping[str, Hook] | None = None,
    pre_with_kwargs: bool = False,
) -> Iterator[None]:
    """Attach forward (and forward-pre) hooks by dotted module path; always remove them on exit.

    Args:
        model: the network; "" names the model itself.
        forward: module path -> `hook(module, args, output)` (may return a replacement output);
            a head layer `PATH:heads` gets the heads as its output (`ingest.cla.heads`).
        pre: module path -> forward-pre hook `hook(module, args)` (or `(module, args, kwargs)`
            with `pre_with_kwargs`).
        pre_with_kwargs: pass keyword arguments to the pre hooks.

    Raises:
        AttributeError: a path that names no sub-module (torch's own message).
    """
    handles = []
    try:
        for path, fn in (pre or {}).items():
            handles.append(model.get_submodule(path).register_forward_pre_hook(fn, with_kwargs=pre_with_kwargs))
        for path, fn in (forward or {}).items():
            if path.endswith(":heads"):  # attention heads: ingest.cla.heads reads them
                from ingest.cla.heads import head_hooks

                handles.extend(head_hooks(model, path, fn))
            else:
                handles.append(model.get_submodule(path).register_forward_hook(fn))
        yield
    finally:
        for handle in handles:
            handle.remove()


def resolve_device(device: str | torch.device) -> torch.device:
    """The compute device: "auto" is CUDA when available, else CPU; anything else as given.

    Raises:
        DeviceError: not a device name, or CUDA requested but not available.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise DeviceError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} requested but CUDA is not available: use `device=` cpu or auto")
    return dev


@contextmanager
def evaluating_on(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """The model in eval mode on `device` while the context is open; on exit (even on error) every
    parameter and buffer holds its original tensor again (same device, same values, same Parameter
    object) and every sub-module is back in its own train/eval mode.

    The original tensors stay referenced while the context is open (no copy back on exit).

    Yields:
        The same model object.
    """
    modes = [(m, m.training) for m in model.modules()]
    placement = [
        (m, kind, key, t)
        for m in model.modules()
        for kind in ("_parameters", "_buffers")
        for key, t in getattr(m, kind).items()
        if t is not None
    ]
    originals = [(m, kind, key, t, t.data) for m, kind, key, t in placement]
    move = any(t.device != device for _, _, _, t in placement)
    try:
        if move:
            model.to(device)
        model.eval()
        yield model
    finally:
        if move:
            for m, kind, key, t, data in originals:
                if kind == "_parameters":
                    m._parameters[key] = t  # the caller's Parameter object (optimisers hold it)
                    t.data = data
                else:
                    m._buffers[key] = t
        for m, mode in modes:
            m.training = mode


def channel_dim(t: torch.Tensor, layer: str = "", *, error: type[Exception] = ValueError) -> int:
    """Where a layer output's neurons are: dim 1 of (B, C) or (B, C, H, W); dim 2 of (B, N, D).

    Args:
        t: the layer's output.
        layer: its name, for the message.
        error: the exception class to raise (callers pass their own `CircuitsError`).

    Raises:
        ValueError (or `error`): any other rank.
    """
    if t.dim() in (2, 4):
        return 1
    if t.dim() == 3:
        return 2  # (B, N, D) token models: a neuron is a feature dimension
    where = f"layer {layer!r} " if layer else ""
    raise error(f"{where}outputs shape {tuple(t.shape)}: expected (B, C[, H, W]) or (B, N, D)")
