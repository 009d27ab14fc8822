"""The portable pruning-mask format (DESIGN §2 "mask", §5): what a circuit becomes when it leaves
the catalog.

A mask names, per module (a dotted module path, the hook site stored in the catalog), the output
channels to zero. An *edge* mask additionally names one cut between two adjacent circuit layers:
the upstream (`src`) channels whose contribution is removed and the downstream (`dst`) channels
that see the pruned input (DESIGN §5 edge pruning). Every mask carries the identity of the weights
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

Masks are only ever read as JSON or safetensors, never unpickled. This module uses NumPy only
(no torch): the catalog side writes masks, `ingest.edit.mask_apply` applies them to models.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from catalog.errors import CircuitsError

__all__ = [
    "FORMAT",
    "VERSION",
    "KINDS",
    "MaskError",
    "ModelIdentity",
    "CatalogSource",
    "ModuleMask",
    "EdgeCut",
    "Mask",
    "mask_to_dict",
    "mask_from_dict",
    "write_json",
    "read_json",
    "write_safetensors",
    "read_safetensors",
    "write_mask",
    "read_mask",
]

FORMAT = "circuit-mask"
VERSION = 1
KINDS = ("circuit", "edge")
SUFFIXES = (".json", ".safetensors")
_METADATA_KEY = "circuit_mask"
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
            raise MaskError(
                f"mask model weights_sha256 must be 64 lowercase hex digits, got {self.weights_sha256!r}"
            )
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


def _channels(value: Any, where: str, width: int | None = None) -> tuple[int, ...]:
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
        object.__setattr__(self, "channels", _channels(self.channels, "channels", self.width))


@dataclass(frozen=True)
class EdgeCut:
    """One edge-pruning cut: `src` channels stop reaching the `dst` channels (DESIGN §5)."""

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
        object.__setattr__(self, "src_channels", _channels(self.src_channels, "mask edge.src_channels"))
        object.__setattr__(self, "dst_channels", _channels(self.dst_channels, "mask edge.dst_channels"))


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
        if self.kind == "circuit":
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

    edge = None
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
        return Mask(
            kind=doc.get("kind"),
            model=ModelIdentity(model.get("name"), model.get("weights_sha256"), model.get("architecture")),
            modules=mods,
            edge=edge,
            source=CatalogSource(cat.get("circuit_id"), cat.get("run_id"), cat.get("concept"), cat.get("catalog")),
        )
    except MaskError as exc:
        msg = str(exc)
        raise MaskError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def write_json(mask: Mask, path: str | Path) -> Path:
    """Write a mask as JSON. Returns the path written."""
    path = Path(path)
    path.write_text(_dumps(mask_to_dict(mask)), encoding="utf-8")
    return path


def _dumps(doc: dict[str, Any]) -> str:
    """JSON with one line per top-level field and per module, so channel lists stay on one line."""
    fields = []
    for key, value in doc.items():
        if key == "modules":
            rows = ",\n".join(f"    {json.dumps(p)}: {json.dumps(m)}" for p, m in value.items())
            text = "{\n" + rows + "\n  }"
        else:
            text = json.dumps(value)
        fields.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def read_json(path: str | Path) -> Mask:
    """Read a JSON mask.

    Raises:
        MaskError: missing file, invalid JSON or not a valid mask document.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MaskError(f"mask file {path} does not exist") from None
    except UnicodeDecodeError:
        raise MaskError(f"{path}: not a JSON mask (the file is not UTF-8 text)") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MaskError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return mask_from_dict(doc, where=str(path))


# --------------------------------------------------------------------------- safetensors


def _tensor_name(path: str) -> str:
    return f"modules/{path}"


def write_safetensors(mask: Mask, path: str | Path) -> Path:
    """Write a mask as safetensors: int64 channel tensors, the JSON header in the metadata."""
    from safetensors.numpy import save_file

    path = Path(path)
    tensors = {_tensor_name(p): np.asarray(m.channels, dtype=np.int64) for p, m in mask.modules.items()}
    if mask.edge is not None:
        tensors["edge/src_channels"] = np.asarray(mask.edge.src_channels, dtype=np.int64)
        tensors["edge/dst_channels"] = np.asarray(mask.edge.dst_channels, dtype=np.int64)
    header = json.dumps(mask_to_dict(mask, with_channels=False))
    save_file(tensors, str(path), metadata={_METADATA_KEY: header, "format": FORMAT, "version": str(VERSION)})
    return path


def read_safetensors(path: str | Path) -> Mask:
    """Read a safetensors mask (NumPy only; nothing is unpickled).

    Raises:
        MaskError: missing file, not a safetensors file, no mask header, or tensors that do not
            match the header.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise MaskError(f"mask file {path} does not exist")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as exc:
        raise MaskError(f"{path}: not a safetensors file ({exc})") from None
    if _METADATA_KEY not in meta:
        raise MaskError(f"{path}: a safetensors file without a '{_METADATA_KEY}' header is not a mask")
    try:
        doc = json.loads(meta[_METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise MaskError(f"{path}: the '{_METADATA_KEY}' header is not valid JSON ({exc.msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("modules"), dict):
        raise MaskError(f"{path}: the '{_METADATA_KEY}' header has no 'modules' object")
    expected = {_tensor_name(p) for p in doc["modules"]}
    if isinstance(doc.get("edge"), dict):
        expected |= {"edge/src_channels", "edge/dst_channels"}
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise MaskError(f"{path}: tensors do not match the header (missing {missing}, unexpected {extra})")
    for p, entry in doc["modules"].items():
        if not isinstance(entry, dict):
            raise MaskError(f"{path}: modules[{p!r}] must be an object")
        entry["channels"] = _channels(tensors[_tensor_name(p)], f"{path}: tensor {_tensor_name(p)}")
    if isinstance(doc.get("edge"), dict):
        for end in ("src_channels", "dst_channels"):
            doc["edge"][end] = _channels(tensors[f"edge/{end}"], f"{path}: tensor edge/{end}")
    return mask_from_dict(doc, where=str(path))


# --------------------------------------------------------------------------- by suffix


def write_mask(mask: Mask, path: str | Path) -> Path:
    """Write a mask as JSON or safetensors, chosen by the file's suffix.

    Raises:
        MaskError: the suffix is neither .json nor .safetensors.
    """
    path = Path(path)
    if path.suffix == ".json":
        return write_json(mask, path)
    if path.suffix == ".safetensors":
        return write_safetensors(mask, path)
    raise MaskError(f"cannot tell the mask format from {path.name!r}: name the file *.json or *.safetensors")


def read_mask(path: str | Path) -> Mask:
    """Read a mask written by `write_mask`; the format is recognised from the file's content.

    Raises:
        MaskError: missing, unreadable or malformed file.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise MaskError(f"mask file {path} does not exist") from None
    except IsADirectoryError:
        raise MaskError(f"{path} is a folder, not a mask file") from None
    if head.lstrip()[:1] == b"{":
        return read_json(path)
    # safetensors begins with a little-endian u64 header length, then the JSON header itself
    if len(head) >= 9 and head[8:9] == b"{":
        return read_safetensors(path)
    raise MaskError(f"{path}: not a mask (neither a JSON document nor a safetensors file)")
