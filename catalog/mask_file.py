"""The portable pruning-mask format (docs/architecture.md, "Vocabulary"; docs/method.md, "Interventions"): what a circuit becomes when it leaves
the catalog.

A mask names, per module (a dotted module path, the hook site stored in the catalog), the output
channels to zero. An *edge* mask additionally names one cut between two adjacent circuit layers:
the upstream (`src`) channels whose contribution is removed and the downstream (`dst`) channels
that see the pruned input (docs/method.md, "Interventions" edge pruning). Every mask carries the identity of the weights
it was made for, so applying it to other weights is refused rather than silently meaningless.

Two encodings of the same content, format version 1:

* JSON — human-readable::

    {"format": "circuit-mask", "version": 1, "kind": "circuit",
     "model": {"name": "catfish-mini", "architecture": "…", "weights_sha256": "…"},
     "catalog": {"circuit_id": 3, "run_id": 2, "concept": "star", "catalog": "circuits.duckdb"},
     "modules": {"inception3a": {"channels": [4, 17], "width": 64}, …},
     "edge": null}

  with, for `kind: "edge"`, ``"edge": {"src": A, "dst": B, "src_channels": […],
  "dst_channels": […]}`` and `modules` holding exactly A and B (their circuit channels and widths).
* safetensors — for tensor-minded users: one int64 tensor per channel list (`modules/<path>`,
  `edge/src_channels`, `edge/dst_channels`) and the JSON document without its channel lists in the
  file's metadata under `circuit_mask`.

This module holds the content (dataclasses, validation, dict conversion); `catalog.mask_io` reads
and writes the two encodings. Masks are only ever read as JSON or safetensors, never unpickled.
Both use NumPy only (no torch): `queries.mask_export` makes masks from the catalog,
`ingest.edit.mask_apply` applies them to models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from catalog.errors import CircuitsError
from catalog.vocab import MaskKind

__all__ = [
    "FORMAT",
    "KINDS",
    "VERSION",
    "CatalogSource",
    "EdgeCut",
    "Mask",
    "MaskError",
    "ModelIdentity",
    "ModuleMask",
    "mask_from_dict",
    "mask_to_dict",
    "parse_channels",
]

FORMAT = "circuit-mask"
VERSION = 1
KINDS: tuple[str, ...] = tuple(MaskKind)
"""Every mask kind (`catalog.vocab.MaskKind`)."""
SUFFIXES = (".json", ".safetensors")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class MaskError(CircuitsError):
    """A mask file that cannot be read, or a mask that does not fit the model it is applied to."""


@dataclass(frozen=True)
class ModelIdentity:
    """The model a mask was made for: its name and the sha256 of its weights."""

    name: str
    weights_sha256: str
    architecture: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise MaskError("mask model name must be a non-empty string")
        if not isinstance(self.weights_sha256, str) or not _SHA256.match(self.weights_sha256):
            raise MaskError(f"mask model weights_sha256 must be 64 lowercase hex digits, got {self.weights_sha256!r}")
        if self.architecture is not None and not isinstance(self.architecture, str):
            raise MaskError("mask model architecture must be a string or null")


@dataclass(frozen=True)
class CatalogSource:
    """Where in a catalog the mask came from (all optional: a hand-written mask has none)."""

    circuit_id: int | None = None
    run_id: int | None = None
    concept: str | None = None
    catalog: str | None = None  # catalog URL (password hidden) or file path

    def __post_init__(self) -> None:
        for name in ("circuit_id", "run_id"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise MaskError(f"mask catalog.{name} must be an integer or null, got {value!r}")
        for name in ("concept", "catalog"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise MaskError(f"mask catalog.{name} must be a string or null, got {value!r}")


def parse_channels(value: Any, where: str, width: int | None = None) -> tuple[int, ...]:
    """Validate a channel list: integers, no duplicates, within [0, width); returned ascending."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "iu":
            raise MaskError(f"{where}: channels must be a 1-D integer tensor, got {value.dtype} {value.shape}")
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise MaskError(f"{where}: channels must be a list of integers, got {type(value).__name__}")
    out = []
    for c in value:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise MaskError(f"{where}: channel {c!r} is not an integer")
        out.append(int(c))
    if len(set(out)) != len(out):
        raise MaskError(f"{where}: repeated channels in {out}")
    bad = [c for c in out if c < 0 or (width is not None and c >= width)]
    if bad:
        limit = f"0..{width - 1} (width {width})" if width is not None else "0.."
        raise MaskError(f"{where} {bad} are outside {limit}")
    return tuple(sorted(out))


@dataclass(frozen=True)
class ModuleMask:
    """The channels of one module's output that the mask concerns, and that output's width."""

    channels: tuple[int, ...]
    width: int

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise MaskError(f"width must be a positive integer, got {self.width!r}")
        object.__setattr__(self, "channels", parse_channels(self.channels, "channels", self.width))


@dataclass(frozen=True)
class EdgeCut:
    """One edge-pruning cut: `src` channels stop reaching the `dst` channels (docs/method.md, "Interventions")."""

    src: str
    dst: str
    src_channels: tuple[int, ...]
    dst_channels: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("src", "dst"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise MaskError(f"mask edge.{name} must be a module path")
        if self.src == self.dst:
            raise MaskError(f"mask edge: src and dst are the same module {self.src!r}")
        object.__setattr__(self, "src_channels", parse_channels(self.src_channels, "mask edge.src_channels"))
        object.__setattr__(self, "dst_channels", parse_channels(self.dst_channels, "mask edge.dst_channels"))


@dataclass(frozen=True)
class Mask:
    """A pruning mask (format version 1).

    `kind == "circuit"`: zero `modules[path].channels` of every module's output.
    `kind == "edge"`: `edge` names the cut; `modules` holds exactly its src and dst modules with the
    same channels, so every module's width is recorded for validation.
    """

    kind: str
    model: ModelIdentity
    modules: Mapping[str, ModuleMask]
    edge: EdgeCut | None = None
    source: CatalogSource = field(default_factory=CatalogSource)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MaskError(f"unknown mask kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if not isinstance(self.modules, Mapping) or not self.modules:
            raise MaskError("mask names no modules")
        for path, mm in self.modules.items():
            if not isinstance(path, str) or not path:
                raise MaskError(f"mask module path must be a non-empty string, got {path!r}")
            if not isinstance(mm, ModuleMask):
                raise MaskError(f"mask module {path!r} is not a ModuleMask")
        object.__setattr__(self, "modules", dict(self.modules))  # a copy: the caller's dict may change
        if self.kind == MaskKind.circuit:
            if self.edge is not None:
                raise MaskError("a circuit mask has no edge entry (use kind 'edge')")
            return
        e = self.edge
        if e is None:
            raise MaskError("an edge mask needs an edge entry {src, dst, src_channels, dst_channels}")
        if set(self.modules) != {e.src, e.dst}:
            raise MaskError(
                f"an edge mask's modules must be exactly its src and dst ({e.src!r}, {e.dst!r}), "
                f"got {sorted(self.modules)}"
            )
        for end, chans in (("src", e.src_channels), ("dst", e.dst_channels)):
            path = getattr(e, end)
            if self.modules[path].channels != chans:
                raise MaskError(f"mask edge.{end}_channels differ from modules[{path!r}].channels")

    def describe(self) -> str:
        """One line for humans: kind, model, modules and channel counts."""
        n = sum(len(m.channels) for m in self.modules.values())
        what = (
            f"edge {self.edge.src} → {self.edge.dst} ({len(self.edge.src_channels)} → "
            f"{len(self.edge.dst_channels)} channels)"
            if self.edge is not None
            else f"{n} channels in {len(self.modules)} modules"
        )
        return f"{self.kind} mask for {self.model.name} (weights {self.model.weights_sha256[:12]}…): {what}"


# --------------------------------------------------------------------------- dict / JSON


def mask_to_dict(mask: Mask, *, with_channels: bool = True) -> dict[str, Any]:
    """The JSON document of a mask (channel lists left out when `with_channels` is False)."""

    def mod(m: ModuleMask) -> dict[str, Any]:
        return {"channels": list(m.channels), "width": m.width} if with_channels else {"width": m.width}

    edge: dict[str, Any] | None = None
    if mask.edge is not None:
        edge = {"src": mask.edge.src, "dst": mask.edge.dst}
        if with_channels:
            edge |= {"src_channels": list(mask.edge.src_channels), "dst_channels": list(mask.edge.dst_channels)}
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": mask.kind,
        "model": {
            "name": mask.model.name,
            "architecture": mask.model.architecture,
            "weights_sha256": mask.model.weights_sha256,
        },
        "catalog": {
            "circuit_id": mask.source.circuit_id,
            "run_id": mask.source.run_id,
            "concept": mask.source.concept,
            "catalog": mask.source.catalog,
        },
        "modules": {path: mod(m) for path, m in mask.modules.items()},
        "edge": edge,
    }


def _obj(doc: Any, key: str, where: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise MaskError(f"{where}: '{key}' must be an object")
    return value


def mask_from_dict(doc: Any, *, where: str = "mask") -> Mask:
    """Build and validate a Mask from its JSON document.

    Raises:
        MaskError: not a circuit-mask document, an unsupported version, or a malformed field.
    """
    if not isinstance(doc, dict):
        raise MaskError(f"{where}: not a mask (the document is not a JSON object)")
    if doc.get("format") != FORMAT:
        raise MaskError(f"{where}: not a mask (format is {doc.get('format')!r}, expected {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise MaskError(
            f"{where}: mask format version {doc.get('version')!r} is not supported (this version reads "
            f"{VERSION}): re-export it with `circuits export`"
        )
    model = _obj(doc, "model", where)
    cat = doc.get("catalog") or {}
    if not isinstance(cat, dict):
        raise MaskError(f"{where}: 'catalog' must be an object")
    modules = _obj(doc, "modules", where)
    try:
        mods = {}
        for path, entry in modules.items():
            if not isinstance(entry, dict) or "channels" not in entry or "width" not in entry:
                raise MaskError(f"{where}: modules[{path!r}] needs 'channels' and 'width'")
            try:
                mods[path] = ModuleMask(entry["channels"], entry["width"])
            except MaskError as exc:
                raise MaskError(f"{where}: modules[{path!r}]: {exc}") from None
        edge = doc.get("edge")
        if edge is not None:
            if not isinstance(edge, dict) or not {"src", "dst", "src_channels", "dst_channels"} <= set(edge):
                raise MaskError(f"{where}: 'edge' needs src, dst, src_channels and dst_channels")
            edge = EdgeCut(edge["src"], edge["dst"], edge["src_channels"], edge["dst_channels"])
        # the fields' types are checked by Mask/ModelIdentity.__post_init__ (a MaskError names them)
        return Mask(
            kind=cast(str, doc.get("kind")),
            model=ModelIdentity(
                cast(str, model.get("name")), cast(str, model.get("weights_sha256")), model.get("architecture")
            ),
            modules=mods,
            edge=edge,
            source=CatalogSource(cat.get("circuit_id"), cat.get("run_id"), cat.get("concept"), cat.get("catalog")),
        )
    except MaskError as exc:
        msg = str(exc)
        raise MaskError(msg if msg.startswith(where) else f"{where}: {msg}") from None
