"""Reading and writing mask files: JSON and safetensors, chosen by suffix or recognised by content.

The content and its validation live in `catalog.mask_file` (see its docstring for both
encodings); this module only turns files into `Mask` objects and back. NumPy and safetensors only
(no torch); nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from catalog.atomic import atomic_path, write_text_atomic
from catalog.mask_file import FORMAT, VERSION, Mask, MaskError, mask_from_dict, mask_to_dict, parse_channels

__all__ = ["read_json", "read_mask", "read_safetensors", "write_json", "write_mask", "write_safetensors"]

_METADATA_KEY = "circuit_mask"
MAX_MASK_BYTES = 64 << 20  # a mask lists channels: every channel of a ResNet-152 is well under 1 MiB
MAX_MASK_DEPTH = 32  # a mask document nests 4 levels; deeper input is refused before json parses it


def write_json(mask: Mask, path: str | Path) -> Path:
    """Write a mask as JSON. Returns the path written."""
    path = Path(path)
    write_text_atomic(path, _dumps(mask_to_dict(mask)))  # whole or not at all
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
    _check_size(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a UTF-8 byte-order mark is tolerated
    except FileNotFoundError:
        raise MaskError(f"mask file {path} does not exist") from None
    except UnicodeDecodeError:
        raise MaskError(f"{path}: not a JSON mask (the file is not UTF-8 text)") from None
    return mask_from_dict(_loads(text, str(path)), where=str(path))


def _loads(text: str, where: str) -> Any:
    """JSON text → objects, refusing documents nested deeper than a mask ever is before parsing."""
    if _nesting_depth(text) > MAX_MASK_DEPTH:
        raise MaskError(f"{where}: JSON nested more than {MAX_MASK_DEPTH} levels deep is not a mask")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys(where))
    except json.JSONDecodeError as exc:
        raise MaskError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:  # belt and braces: the depth scan bounds it already
        raise MaskError(f"{where}: JSON nested too deeply to be a mask") from None


def _unique_keys(where: str) -> Any:
    """A `json.loads` hook that refuses an object with a key twice (JSON would keep the last one
    silently: a mask whose two entries for one module disagree is ambiguous, not a mask)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise MaskError(f"{where}: duplicated key {key[:80]!r} in one JSON object: keep one of them")
            out[key] = value
        return out

    return hook


def _nesting_depth(text: str, chunk: int = 1 << 22) -> int:
    """An upper bound of the JSON nesting depth (brackets inside strings count too: it only caps).

    Vectorised with NumPy over 4 MiB chunks: the running depth is the prefix sum of +1 per opening
    and -1 per closing bracket, so a 64 MiB file is scanned in well under a second.
    """
    steps = np.zeros(256, dtype=np.int8)
    steps[[ord("["), ord("{")]] = 1
    steps[[ord("]"), ord("}")]] = -1
    data = text.encode("utf-8", "surrogatepass")
    depth, deepest = 0, 0
    for start in range(0, len(data), chunk):
        moves = steps[np.frombuffer(data, dtype=np.uint8, count=min(chunk, len(data) - start), offset=start)]
        moves = moves[moves != 0].astype(np.int32)
        if moves.size:
            running = np.cumsum(moves) + depth
            deepest = max(deepest, int(running.max()))
            depth = int(running[-1])
    return deepest


def _check_size(path: Path) -> None:
    """Refuse a file too large to be a mask before reading it (a mask of every channel of a large
    model is a few MB)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise MaskError(f"mask file {path} does not exist") from None
    if size > MAX_MASK_BYTES:
        raise MaskError(
            f"{path} is {size / 2**20:.0f} MiB: larger than any mask ({MAX_MASK_BYTES >> 20} MiB at most); "
            "check the file"
        )


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
    with atomic_path(path) as tmp:  # whole or not at all
        save_file(tensors, str(tmp), metadata={_METADATA_KEY: header, "format": FORMAT, "version": str(VERSION)})
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
    _check_size(path)
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as exc:
        raise MaskError(f"{path}: not a safetensors file ({exc})") from None
    if _METADATA_KEY not in meta:
        raise MaskError(f"{path}: a safetensors file without a '{_METADATA_KEY}' header is not a mask")
    doc = _loads(meta[_METADATA_KEY], f"{path}: the '{_METADATA_KEY}' header")
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
        entry["channels"] = parse_channels(tensors[_tensor_name(p)], f"{path}: tensor {_tensor_name(p)}")
    if isinstance(doc.get("edge"), dict):
        for end in ("src_channels", "dst_channels"):
            doc["edge"][end] = parse_channels(tensors[f"edge/{end}"], f"{path}: tensor edge/{end}")
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
            head = f.read(64)
    except FileNotFoundError:
        raise MaskError(f"mask file {path} does not exist") from None
    except IsADirectoryError:
        raise MaskError(f"{path} is a folder, not a mask file") from None
    _check_size(path)
    if head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"{":  # BOM and leading whitespace tolerated
        return read_json(path)
    # safetensors begins with a little-endian u64 header length, then the JSON header itself
    if len(head) >= 9 and head[8:9] == b"{":
        return read_safetensors(path)
    raise MaskError(f"{path}: not a mask (neither a JSON document nor a safetensors file)")
