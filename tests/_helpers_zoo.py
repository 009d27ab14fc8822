"""Checks every bundled model's shipped weights pass: the JSON sidecar beside the weights file
names the model, its classes, the file's and the state dict's sha256 and the command that made it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ingest import zoo
from ingest.datasets.catfish import CLASS_NAMES
from ingest.zoo.registry import weights_sha256


def checked_sidecar(model: str, weights: Path, command: str) -> tuple[dict[str, Any], Any]:
    """The sidecar of a bundled model's weights, checked against the file and the model the zoo loads.

    Args:
        model: the zoo name (its sidecar's "model").
        weights: the shipped state-dict file (the sidecar is beside it, `.json`).
        command: how the sidecar's reproduce command starts (e.g. "circuits train typo ").

    Returns:
        (the sidecar, the zoo's LoadedModel with those weights).
    """
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["model"] == model and meta["class_names"] == list(CLASS_NAMES)
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == meta["file_sha256"]
    loaded = zoo.load_model(model)
    assert loaded.weights_source == f"bundled:{weights.name}"
    assert weights_sha256(loaded.module) == loaded.weights_sha256 == meta["state_dict_sha256"]
    assert meta["command"].startswith(command)
    return meta, loaded
