"""Circuit sizes `k`: one parser and one validator for every entry point (torch-free).

A circuit keeps k neurons per layer: one integer for every layer, or one per layer. The CLI's
`--k 5` / `--k 4,6,6`, a job file's `k: [4, 6, 6]`, `circuits defend --k` and the library's
`k=` all go through `parse_k` (the form) and `k_per_layer` (against a run's layers and widths).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import SupportsIndex

from catalog.errors import CircuitsError

__all__ = ["BadK", "K", "k_per_layer", "parse_k"]

K = int | tuple[int, ...]
"""A circuit size: one k for every layer, or one per layer."""

_FORM = "`k=` takes a positive integer or one per layer, e.g. 5 or 4,6,6"


class BadK(CircuitsError):
    """A circuit size k that is not a positive integer (or one per layer), or does not fit the layers."""


def parse_k(value: object) -> K:
    """Read a circuit size: an int, a list/tuple of ints, or text "5" / "4,6,6".

    Returns:
        An int, or a tuple of ints when more than one is given.

    Raises:
        BadK: not integers, none, or one below 1.
    """
    if isinstance(value, bool):
        raise BadK(f"{_FORM} (got {value!r})")
    if isinstance(value, SupportsIndex):  # int, NumPy integers
        values: tuple[int, ...] = (operator.index(value),)
    elif isinstance(value, str | list | tuple):
        parts = value.split(",") if isinstance(value, str) else list(value)
        try:
            values = tuple(_integer(p) for p in parts if not (isinstance(p, str) and not p.strip()))
        except (TypeError, ValueError):
            raise BadK(f"{_FORM} (got {value!r})") from None
    else:
        raise BadK(f"{_FORM} (got {value!r})")
    if not values:
        raise BadK(f"{_FORM} (got {value!r})")
    if min(values) < 1:
        raise BadK(f"k must be at least 1 (got {','.join(map(str, values))})")
    return values[0] if len(values) == 1 else values


def _integer(part: object) -> int:
    if isinstance(part, str):
        return int(part)
    if isinstance(part, SupportsIndex) and not isinstance(part, bool):
        return operator.index(part)  # int, NumPy integers
    raise TypeError(part)


def k_per_layer(k: object, layers: Sequence[str], widths: Sequence[int]) -> list[int]:
    """One k per layer, checked against the layers' widths.

    Args:
        k: as `parse_k` takes it.
        layers: the run's layers, forward order.
        widths: their neuron counts.

    Raises:
        BadK: a bad k, the wrong number of values, or a k larger than its layer.
    """
    parsed = parse_k(k)
    ks = [parsed] * len(layers) if isinstance(parsed, int) else list(parsed)
    if len(ks) != len(layers):
        raise BadK(f"`k=` has {len(ks)} values but there are {len(layers)} layers: give one k or one per layer")
    for name, kk, width in zip(layers, ks, widths):
        if kk > width:
            raise BadK(f"k={kk} is larger than layer {name}, which has {width} neurons: choose k ≤ {width}")
    return ks
