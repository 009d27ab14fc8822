"""Everything that runs a model: the zoo, layer capture, CLA, circuit search, interventions,
masks, the CatFish-synth dataset, training, and the ingest pipeline that writes to the catalog.

    from ingest import attribute, find_circuit, load_model, preprocess
    m = load_model("catfish-mini")
    S = attribute(m.module, m.layers, preprocess(m.spec, images))   # list of (C_i, C_{i+1}) float32
    circuit = find_circuit(S, k=3)

Attributes are imported on first use, so importing a submodule (or `circuits --help`) does not
pay for torch. Importing the package sets `OMP_WAIT_POLICY=PASSIVE` (unless set) before torch
can start OpenMP: see `ingest.threads`.
"""

from __future__ import annotations

import importlib
from typing import Any

from ingest.threads import set_wait_policy

set_wait_policy()  # before any torch import: OpenMP reads it only once, when torch loads

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
    "Circuit": "ingest.cla.search",
    "find_circuit": "ingest.cla.search",
    "attribute": "ingest.cla.attribute",
    "attribute_reference": "ingest.cla.reference",
    "capture_layers": "ingest.cla.capture",
    "evaluate": "ingest.edit.interventions",
    "load_model": "ingest.zoo.registry",
    "preprocess": "ingest.zoo.registry",
    "apply_mask": "ingest.edit.mask_apply",
    "bake_mask": "ingest.edit.mask_apply",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ingest' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
