"""Plain, frozen results of the catalog's data functions (`catalog.store`); no ORM rows escape.

They stay valid after the session that produced them is closed (docs/architecture.md, "Conventions").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from catalog.errors import NotFound


@dataclass(frozen=True)
class LayerRef:
    """One catalogued layer of a model.

    Attributes:
        id: layer id.
        name: dotted module path (the hook site).
        position: index in the model's layer_order (forward order when catalogued together).
        width: number of channels.
        neuron_ids: (width,) int64 neuron ids indexed by channel.
    """

    id: int
    name: str
    position: int
    width: int
    neuron_ids: np.ndarray = field(repr=False, compare=False)


@dataclass(frozen=True)
class ModelRef:
    """A catalogued model (network + weights identity) and its layers in forward order."""

    id: int
    name: str
    architecture: str
    weights_sha256: str
    layer_order: tuple[str, ...]
    layers: tuple[LayerRef, ...]

    def layer(self, name: str) -> LayerRef:
        """The layer called `name`.

        Raises:
            NotFound: the model has no such layer in the catalog.
        """
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise NotFound(f"model {self.name} has no layer {name!r} in the catalog (it has {list(self.layer_order)})")


@dataclass(frozen=True)
class RunRef:
    """One CLA run with its provenance. `widths[i]` is the channel count of `layer_names[i]`."""

    id: int
    model_id: int
    model: str
    architecture: str
    weights_sha256: str
    concept_id: int
    concept: str
    layer_names: tuple[str, ...]
    widths: tuple[int, ...]
    params: dict[str, Any]
    image_set_sha256: str
    n_images: int
    provenance_key: str
    library_versions: dict[str, str]
    device: str
    status: str
    error: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    seconds: float | None


@dataclass(frozen=True)
class CircuitRef:
    """A circuit: `channels[i]` are its (sorted) channels in `layer_names[i]`, `k[i]` their count."""

    id: int
    run_id: int
    model: str
    weights_sha256: str
    concept: str
    layer_names: tuple[str, ...]
    widths: tuple[int, ...]
    channels: tuple[tuple[int, ...], ...]
    k: tuple[int, ...]
    fixed: dict[str, list[int]] | None
    sweeps: int
    converged: bool
    objective: float
    objective_history: tuple[float, ...]
    created_at: dt.datetime


@dataclass(frozen=True)
class EvaluationRow:
    """One metric of an intervention on one image set, beside the clean and baseline values."""

    image_set: str
    image_set_sha256: str
    n_images: int
    metric: str
    clean_value: float | None
    value: float
    baseline_value: float | None


@dataclass(frozen=True)
class InterventionRef:
    """A stored intervention of a circuit and its evaluations."""

    id: int
    circuit_id: int
    kind: str
    params: dict[str, Any]
    edge_fraction: float
    baseline_edge_fraction: float | None
    created_at: dt.datetime
    evaluations: tuple[EvaluationRow, ...]
