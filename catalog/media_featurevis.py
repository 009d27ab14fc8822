"""Feature visualisations kept in the catalog: one picture per circuit neuron of a run.

Table `neuron_featurevis` (migration 0005), written by `ingest.featurevis` (`circuits thumbnails
RUN MODEL --featurevis`): the PNG, its size, the unit's mean activation on it and the
parameters it was made with (recipe, size, steps, learning rate, seed, weights sha256). Data
functions take the caller's Session and never commit; they return plain dataclasses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from catalog.errors import CatalogError, NotFound
from catalog.models import NeuronFeatureVis, Run, utcnow

__all__ = [
    "MAX_FEATUREVIS_BYTES",
    "FeatureVisRow",
    "featurevis_png",
    "read_featurevis",
    "write_featurevis",
]

MAX_FEATUREVIS_BYTES = 64_000
"""Largest feature-visualisation PNG the catalog accepts (128 px pictures are 25–50 kB)."""


@dataclass(frozen=True)
class FeatureVisRow:
    """One stored feature visualisation (without or with its PNG bytes)."""

    run_id: int
    neuron_id: int
    width: int
    height: int
    activation: float
    params: dict[str, Any]
    png: bytes | None = None
    created_at: dt.datetime | None = None


def write_featurevis(session: Session, run_id: int, rows: Iterable[FeatureVisRow]) -> int:
    """Store a run's feature visualisations, replacing the run's old ones.

    Returns:
        The number of rows written.

    Raises:
        CatalogError: a picture is not a PNG or is larger than `MAX_FEATUREVIS_BYTES`.
    """
    out = []
    now = utcnow()
    for r in rows:
        assert r.png is not None, "write_featurevis needs the PNG bytes"
        if not r.png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise CatalogError(f"feature visualisation of neuron {r.neuron_id} is not a PNG")
        if len(r.png) > MAX_FEATUREVIS_BYTES:
            raise CatalogError(
                f"feature visualisation of neuron {r.neuron_id} is {len(r.png)} bytes, over the "
                f"{MAX_FEATUREVIS_BYTES}-byte limit: make it smaller"
            )
        out.append(
            dict(
                run_id=int(run_id),
                neuron_id=int(r.neuron_id),
                width=int(r.width),
                height=int(r.height),
                activation=float(r.activation),
                params=dict(r.params),
                mime="image/png",
                data=r.png,
                created_at=now,
            )
        )
    session.execute(delete(NeuronFeatureVis).where(NeuronFeatureVis.run_id == int(run_id)))
    if out:
        session.execute(insert(NeuronFeatureVis), out)
    return len(out)


def read_featurevis(
    session: Session, run_id: int | None = None, neuron_ids: Sequence[int] | None = None, *, with_png: bool = False
) -> dict[tuple[int, int], FeatureVisRow]:
    """Stored feature visualisations of complete runs: {(run_id, neuron_id): row}.

    Args:
        session: the caller's session.
        run_id: only this run (None: every complete run).
        neuron_ids: only these neurons (None: all).
        with_png: include the PNG bytes.
    """
    t = NeuronFeatureVis
    cols = [t.run_id, t.neuron_id, t.width, t.height, t.activation, t.params, t.created_at]
    if with_png:
        cols.append(t.data)
    q = select(*cols).join(Run, Run.id == t.run_id).where(Run.status == "complete")
    if run_id is not None:
        q = q.where(t.run_id == int(run_id))
    if neuron_ids is not None:
        q = q.where(t.neuron_id.in_([int(n) for n in neuron_ids]))
    out = {}
    for r in session.execute(q):
        params = r[5] if isinstance(r[5], dict) else {}
        png = bytes(r[7]) if with_png else None
        out[(int(r[0]), int(r[1]))] = FeatureVisRow(
            int(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4]), params, png, r[6]
        )
    return out


def featurevis_png(session: Session, run_id: int, neuron_id: int) -> bytes:
    """One feature visualisation's PNG bytes.

    Raises:
        NotFound: none stored for this run and neuron.
    """
    data = session.scalar(
        select(NeuronFeatureVis.data).where(
            NeuronFeatureVis.run_id == int(run_id), NeuronFeatureVis.neuron_id == int(neuron_id)
        )
    )
    if data is None:
        raise NotFound(
            f"no feature visualisation of neuron {neuron_id} in run {run_id}: make them with "
            f"`circuits thumbnails {run_id} MODEL --featurevis`"
        )
    return bytes(data)
