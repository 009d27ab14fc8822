"""Turn a catalogued circuit into a portable pruning mask (catalog.mask_file) — no model, no torch.

    mask = mask_from_circuit(cat, 3)                 # in memory: a `catalog.mask_file.Mask`
    export_mask(cat, 3, "stripes.mask.json")         # or written to a file (JSON or safetensors)
    ingest.apply_mask(model, mask)                   # then applied to a model you hold

Like every call that writes (here a file), `export_mask` takes the `Catalog`; `mask_from_circuit`
only reads and takes the `Catalog` or a `Session` of it.

Circuit masks list every circuit layer with its circuit channels (circuit pruning, docs/method.md,
"Interventions"), less an anchored circuit's anchors (its class logit), as `circuits ablate` prunes it.
Edge masks name one cut between two adjacent circuit layers, `layer_names[pair]` →
`layer_names[pair + 1]` (default the first two), with the circuit's channels at both ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

from sqlalchemy.orm import Session

from catalog import store
from catalog._keywords import check_keywords
from catalog.connect import display
from catalog.engine import Catalog
from catalog.mask_file import KINDS, CatalogSource, EdgeCut, Mask, MaskError, ModelIdentity, ModuleMask
from catalog.mask_io import write_mask
from catalog.refs import CircuitRef
from catalog.vocab import MaskKind

__all__ = ["ExportResult", "MaskOptions", "circuit_mask", "export_mask", "mask_from_circuit"]


class MaskOptions(TypedDict, total=False):
    """Which mask of a circuit: the keyword arguments of `mask_from_circuit`, `export_mask` and
    `circuit_mask`.

    Keys:
        kind: "circuit" (zero every circuit neuron; the default) or "edge" (cut one adjacent layer pair).
        pair: for edge masks, the index i of the cut `layer_names[i]` → `layer_names[i + 1]` (default 0).
        prune_anchor: keep an anchored circuit's fixed neurons in a circuit mask (default False: left
            out, as `circuits ablate` leaves them; a layer left empty is not listed).
    """

    kind: str
    pair: int
    prune_anchor: bool


@dataclass(frozen=True)
class ExportResult:
    """What `export_mask` wrote."""

    path: Path
    format: str  # "json" | "safetensors"
    mask: Mask


def mask_from_circuit(cat: Catalog | Session, circuit: int | CircuitRef, **options: Unpack[MaskOptions]) -> Mask:
    """The pruning mask of a catalogued circuit, in memory (`export_mask` writes it to a file).

    Args:
        cat: the catalog (`Catalog`, read-only is enough) or a `Session` of it.
        circuit: the circuit's id, or the circuit as `catalog.store.read_circuit` returns it.
        options: `kind`, `pair`, `prune_anchor` (`MaskOptions`).

    Returns:
        The Mask, tied to the circuit's model name and weights sha256 (apply it with
        `ingest.apply_mask`, or bake it with `ingest.bake_mask`).

    Raises:
        NotFound: no such circuit.
        MaskError: an unknown kind, or a pair outside the circuit's layers.
        TypeError: a keyword `MaskOptions` does not have.
    """
    if isinstance(cat, Catalog):
        with cat.session() as s:
            return mask_from_circuit(s, circuit, **options)
    ref = circuit if isinstance(circuit, CircuitRef) else store.read_circuit(cat, int(circuit))
    architecture = store.read_run(cat, ref.run_id).architecture
    bind = cat.get_bind()
    where = display(bind.url) if hasattr(bind, "url") else None
    return circuit_mask(ref, architecture=architecture, catalog=where, **options)


def circuit_mask(
    circuit: CircuitRef,
    *,
    architecture: str | None = None,
    catalog: str | None = None,
    **options: Unpack[MaskOptions],
) -> Mask:
    """The mask of a circuit already read (`catalog.store.read_circuit`); no catalog access.

    Args:
        circuit: the circuit.
        architecture: the model's architecture, recorded for readers of the file.
        catalog: where the circuit came from (catalog path, or URL without password).
        options: `kind`, `pair`, `prune_anchor` (`MaskOptions`).

    Raises:
        MaskError: an unknown kind, or a pair outside the circuit's layers.
        TypeError: a keyword `MaskOptions` does not have.
    """
    check_keywords("circuit_mask()", options, MaskOptions)
    kind, pair = options.get("kind", MaskKind.circuit), options.get("pair", 0)
    prune_anchor = options.get("prune_anchor", False)
    if kind not in KINDS:
        raise MaskError(f"unknown mask kind {kind!r}: use `kind=` {' or '.join(KINDS)}")
    layers = list(zip(circuit.layer_names, circuit.channels, circuit.widths))
    source = CatalogSource(circuit.id, circuit.run_id, circuit.concept, catalog)
    model = ModelIdentity(circuit.model, circuit.weights_sha256, architecture)
    if kind == MaskKind.circuit:
        fixed = {} if prune_anchor else {k: {int(c) for c in v} for k, v in (circuit.fixed or {}).items()}
        kept = [(n, tuple(c for c in chans if int(c) not in fixed.get(n, set())), w) for n, chans, w in layers]
        modules = {name: ModuleMask(chans, width) for name, chans, width in kept if chans}
        return Mask(MaskKind.circuit, model, modules, source=source)
    if not 0 <= pair < len(layers) - 1:
        raise MaskError(
            f"edge pair {pair} is out of range for circuit {circuit.id}, which has {len(layers)} layers: "
            f"use `pair=` 0…{len(layers) - 2}"
        )
    (src, src_ch, src_w), (dst, dst_ch, dst_w) = layers[pair], layers[pair + 1]
    return Mask(
        MaskKind.edge,
        model,
        {src: ModuleMask(tuple(src_ch), src_w), dst: ModuleMask(tuple(dst_ch), dst_w)},
        edge=EdgeCut(src, dst, tuple(src_ch), tuple(dst_ch)),
        source=source,
    )


def export_mask(cat: Catalog, circuit_id: int, path: str | Path, **options: Unpack[MaskOptions]) -> ExportResult:
    """Read a circuit from the catalog and write its mask, as JSON or safetensors by `path`'s suffix.

    Args:
        cat: an open catalog (read-only is enough).
        circuit_id: the circuit.
        path: `*.json` or `*.safetensors`.
        options: `kind`, `pair`, `prune_anchor` (`MaskOptions`).

    Returns:
        The file written, its format and the mask.

    Raises:
        NotFound: no such circuit.
        MaskError: a bad kind, pair or file suffix.
        TypeError: a keyword `MaskOptions` does not have.
    """
    path = Path(path)
    if path.suffix not in (".json", ".safetensors"):
        raise MaskError(f"cannot tell the mask format from {path.name!r}: name the file *.json or *.safetensors")
    mask = mask_from_circuit(cat, circuit_id, **options)
    written = write_mask(mask, path)
    return ExportResult(written, written.suffix.lstrip("."), mask)
