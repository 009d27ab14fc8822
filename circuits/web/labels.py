"""Class names for logit neurons, so a graph shows `285 Egyptian cat` instead of `_fc:285`.

The catalog stores no class names, so they are read from the zoo spec of a built-in model (its
own published labels: torchvision's ImageNet categories, CatFish's class names), and only for
a layer outside the spec's hidden CLA layers (the logits a class circuit is anchored at) whose
width equals the number of labels. A model that is not
built in (a user factory string) is never imported from a name stored in the catalog: its
logits keep their index. Without torch installed (the base install) every logit keeps its index.
"""

from __future__ import annotations

import functools

__all__ = ["class_names"]


@functools.lru_cache(maxsize=32)
def _builtin_labels(model: str) -> tuple[tuple[str, ...], frozenset[str]] | None:
    """(labels, hidden layers) of a built-in zoo model, or None."""
    if ":" in model or "/" in model:  # a user factory: never imported on a catalog's word
        return None
    try:
        from ingest.zoo.registry import available_models, get_spec
    except ImportError:  # the base install has no torch
        return None
    if model not in available_models():
        return None
    try:
        spec = get_spec(model)
    except Exception:
        return None
    return None if spec.labels is None else (tuple(spec.labels), frozenset(spec.layers))


def class_names(model: str, layer: str, width: int) -> tuple[str, ...] | None:
    """The class names of `layer`'s channels when it is a built-in model's logit layer, else None.

    Args:
        model: the catalog's model name (a built-in zoo name has labels).
        layer: the layer drawn.
        width: its number of channels.
    """
    found = _builtin_labels(model)
    if found is None:
        return None
    labels, hidden = found
    return labels if layer not in hidden and len(labels) == width else None
