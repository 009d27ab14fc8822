"""Everything that runs a model: the zoo, layer capture, CLA, circuit search, interventions,
masks, the CatFish-synth dataset, training, and the ingest pipeline that writes to the catalog.

    from ingest import attribute, find_circuit, load_model, preprocess
    m = load_model("catfish-mini")
    S = attribute(m.module, m.layers, preprocess(m.spec, images))   # list of (C_i, C_{i+1}) float32
    circuit = find_circuit(S, k=3)

Attributes are imported on first use, so importing a submodule (or `circuits --help`) does not
pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Circuit",
    "apply_mask",
    "attribute",
    "attribute_reference",
    "bake_mask",
    "capture_layers",
    "evaluate",
    "find_circuit",
    "load_model",
    "preprocess",
]

_LAZY = {
    "Circuit": "ingest.search",
    "find_circuit": "ingest.search",
    "attribute": "ingest.cla",
    "attribute_reference": "ingest.cla",
    "capture_layers": "ingest.capture",
    "evaluate": "ingest.interventions",
    "load_model": "ingest.zoo",
    "preprocess": "ingest.zoo",
    "apply_mask": "ingest.masks",
    "bake_mask": "ingest.masks",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ingest' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
