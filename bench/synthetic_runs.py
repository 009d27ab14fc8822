"""Writing synthetic runs and circuits into a catalog, for the catalog benches: the tests' own
helpers (`tests/_helpers_catalog.py`), so that a bench and a test write their runs alike."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _helpers_catalog import run_fields, write_circuit, write_run

__all__ = ["run_fields", "write_circuits", "write_run"]


def write_circuits(
    s, run_id: int, channel_sets: Sequence[Sequence[Sequence[int]]], *, sweeps: int = 1, history=(0.0,)
) -> list[int]:
    """One circuit per per-layer channel list (k = each layer's channel count); returns their ids."""
    return [write_circuit(s, run_id, channels, sweeps=sweeps, history=history) for channels in channel_sets]
