"""The interventions as scoped hooks (docs/method.md, "Interventions"): circuit pruning and edge pruning.

- **Circuit pruning** zeroes every circuit neuron in every circuit layer.
- **Edge pruning** of the layer pair (L_i, L_{i+1}) computes `A_{i+1}` twice — clean, and with the
  circuit's neurons of `L_i` zeroed — and continues the forward pass with the circuit's neurons of
  `L_{i+1}` taken from the second and every other channel from the first. Only the paths from the
  circuit's `L_i` neurons into its `L_{i+1}` neurons are cut; skip paths and the other channels
  see the clean `L_i`. It works for any model: the hook on `L_{i+1}` re-runs the model's forward
  (with `L_i` zeroed, stopped at `L_{i+1}`) to get the corrupted activations, so each forward
  costs up to two.

Every intervention is a context manager over `ingest.hooks.scoped_hooks`: its hooks are removed on
exit, so a model never keeps a stray hook, even when the forward pass raises. Layers are dotted
module paths, as stored in the catalog. A neuron is a channel (`ingest.hooks.channel_dim`): dim 1
of `(B, C, H, W)` and `(B, C)` outputs, the last dim of token outputs `(B, N, D)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from catalog.errors import CircuitsError
from catalog.vocab import InterventionKind
from ingest.cla.capture import resolve_layers
from ingest.hooks import channel_dim, scoped_hooks

__all__ = ["InterventionError", "check_circuit", "check_kind", "intervention", "prune_circuit", "prune_edges"]


class InterventionError(CircuitsError):
    """An intervention cannot be applied as asked (layer names, channels, pair, inputs)."""


class _StopForward(BaseException):
    """Raised inside the nested corrupted forward pass once it has reached L_{i+1}.

    A `BaseException`, so a user model that wraps its forward in `except Exception` cannot swallow it.
    """


def _as_tensor_output(out: Any, layer: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise InterventionError(f"layer {layer!r} outputs a {type(out).__name__}, not a tensor: choose another layer")
    return out


def _index(channels: Sequence[int], out: torch.Tensor, dim: int, layer: str) -> torch.Tensor:
    width = out.shape[dim]
    idx = [int(c) for c in channels]
    if idx and (min(idx) < 0 or max(idx) >= width):
        raise InterventionError(f"channels {idx} do not fit layer {layer!r}, which has {width} channels")
    return torch.as_tensor(idx, dtype=torch.long, device=out.device)


def _zeroed(out: torch.Tensor, channels: Sequence[int], layer: str) -> torch.Tensor:
    """A copy of `out` with the given channels set to zero (out of place: autograd-safe)."""
    dim = channel_dim(out, layer, error=InterventionError)
    return out.index_fill(dim, _index(channels, out, dim, layer), 0.0)


def check_circuit(layers: Sequence[str], channels: Sequence[Sequence[int]]) -> list[list[int]]:
    """One int channel list per distinct layer.

    Raises:
        InterventionError: mismatched lengths or a repeated layer.
    """
    if len(layers) != len(channels):
        raise InterventionError(f"{len(layers)} layers but {len(channels)} channel lists: give one list per layer")
    if len(set(layers)) != len(layers):
        raise InterventionError(f"a layer is named twice in {list(layers)}")
    return [[int(c) for c in chans] for chans in channels]


@contextmanager
def prune_circuit(model: nn.Module, layers: Sequence[str], channels: Sequence[Sequence[int]]) -> Iterator[None]:
    """Zero every circuit neuron in every circuit layer while the context is open.

    Args:
        model: the network; its forward passes inside the context are pruned.
        layers: dotted module paths of the circuit layers.
        channels: per layer, the channels to zero.

    Raises:
        UnknownLayer: a layer is not a module of `model` (from `ingest.cla.capture`).
        InterventionError: mismatched lengths, or (at forward time) a channel outside its layer.
    """
    chans = check_circuit(layers, channels)
    resolve_layers(model, layers)  # UnknownLayer, with close names, before any hook

    def zero(name: str, ch: list[int]):
        def hook(_m, _inp, out):
            return _zeroed(_as_tensor_output(out, name), ch, name)

        return hook

    with scoped_hooks(model, {name: zero(name, ch) for name, ch in zip(layers, chans)}):
        yield


@contextmanager
def prune_edges(
    model: nn.Module, layers: Sequence[str], channels: Sequence[Sequence[int]], pair: int = 0
) -> Iterator[None]:
    """Cut the circuit's edges from L_pair into L_pair+1 while the context is open.

    Each forward pass of `model` inside the context runs a second, nested forward (stopped at
    L_{i+1}) with the circuit's L_i neurons zeroed; the circuit's L_{i+1} neurons are taken from
    it and all other channels from the clean pass.

    Args:
        model: the network; it must be called as `model(*args, **kwargs)` on its inputs.
        layers: dotted module paths of the circuit layers.
        channels: per layer, the circuit's channels.
        pair: index i of the cut L_i → L_{i+1} (default: the first two circuit layers).

    Raises:
        UnknownLayer: a layer is not a module of `model` (from `ingest.cla.capture`).
        InterventionError: a pair out of range, a channel outside its layer, or (at forward time)
            L_{i+1} that does not run after L_i.
    """
    chans = check_circuit(layers, channels)
    if not 0 <= pair < len(layers) - 1:
        raise InterventionError(f"edge pair {pair} is out of range for {len(layers)} layers: use 0…{len(layers) - 2}")
    src_name, dst_name = layers[pair], layers[pair + 1]
    src_ch, dst_ch = chans[pair], chans[pair + 1]
    resolve_layers(model, [src_name, dst_name])
    state: dict[str, Any] = {"corrupt": False, "inputs": None, "src_ran": False, "corrupted": None}

    def root_pre(_m, args, kwargs):
        if not state["corrupt"]:
            state["inputs"] = (args, kwargs)

    def src_hook(_m, _inp, out):
        if state["corrupt"]:
            state["src_ran"] = True
            return _zeroed(_as_tensor_output(out, src_name), src_ch, src_name)
        return None

    def dst_hook(_m, _inp, out):
        out = _as_tensor_output(out, dst_name)
        if state["corrupt"]:
            state["corrupted"] = out
            raise _StopForward
        args, kwargs = state["inputs"]
        state.update(corrupt=True, src_ran=False, corrupted=None)
        try:
            model(*args, **kwargs)
        except _StopForward:
            pass
        finally:
            state["corrupt"] = False
        corrupted, src_ran = state["corrupted"], state["src_ran"]
        state["corrupted"] = None
        if corrupted is None or not src_ran:
            raise InterventionError(
                f"layer {dst_name!r} is not computed from layer {src_name!r}: "
                "edge pruning needs the pair in forward order"
            )
        assert corrupted.shape == out.shape, "the nested pass changed the shape of L_{i+1}"
        dim = channel_dim(out, dst_name, error=InterventionError)
        idx = _index(dst_ch, out, dim, dst_name)
        return out.index_copy(dim, idx, corrupted.index_select(dim, idx))

    try:
        with scoped_hooks(model, {src_name: src_hook, dst_name: dst_hook}, pre={"": root_pre}, pre_with_kwargs=True):
            yield
    finally:
        state.update(inputs=None, corrupted=None)  # drop references to the last batch


def intervention(
    model: nn.Module,
    layers: Sequence[str],
    channels: Sequence[Sequence[int]],
    kind: InterventionKind | str,
    pair: int = 0,
):
    """The context manager for `kind` (an `InterventionKind`), see `prune_circuit` and `prune_edges`.

    Raises:
        InterventionError: an unknown kind.
    """
    kind = check_kind(kind)
    if kind is InterventionKind.circuit:
        return prune_circuit(model, layers, channels)
    return prune_edges(model, layers, channels, pair)


def check_kind(kind: str) -> InterventionKind:
    """`kind` as an `InterventionKind`.

    Raises:
        InterventionError: not one of the kinds.
    """
    try:
        return InterventionKind(kind)
    except ValueError:
        raise InterventionError(f"unknown intervention kind {kind!r}: use {' or '.join(InterventionKind)}") from None
