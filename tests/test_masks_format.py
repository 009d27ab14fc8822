"""The portable mask format (catalog.mask_file): JSON and safetensors round trips, malformed files."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from catalog.errors import CircuitsError
from catalog.mask_file import (
    FORMAT,
    VERSION,
    CatalogSource,
    EdgeCut,
    Mask,
    MaskError,
    ModelIdentity,
    ModuleMask,
    mask_to_dict,
)
from catalog.mask_io import (
    read_json,
    read_mask,
    read_safetensors,
    write_json,
    write_mask,
    write_safetensors,
)

SHA = "ab" * 32
ROOT = Path(__file__).resolve().parent.parent


def circuit_mask() -> Mask:
    return Mask(
        kind="circuit",
        model=ModelIdentity("catfish-mini", SHA, "catfish-mini (InceptionV1-style)"),
        modules={"mixed3a": ModuleMask((40, 3, 7), 64), "stem.3": ModuleMask((0,), 64), "mixed4b": ModuleMask((), 128)},
        source=CatalogSource(circuit_id=7, run_id=3, concept="star", catalog="/tmp/c.duckdb"),
    )


def edge_mask() -> Mask:
    return Mask(
        kind="edge",
        model=ModelIdentity("googlenet", SHA),
        modules={"inception3a": ModuleMask((1, 2), 256), "inception3b": ModuleMask((5,), 480)},
        edge=EdgeCut("inception3a", "inception3b", (2, 1), (5,)),
    )


@pytest.mark.parametrize("make", [circuit_mask, edge_mask])
@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_round_trip(tmp_path, make, suffix):
    mask = make()
    path = write_mask(mask, tmp_path / f"m{suffix}")
    assert path.suffix == suffix
    back = read_mask(path)
    assert back == mask
    assert back.modules["mixed3a" if mask.kind == "circuit" else "inception3a"].channels == (
        (3, 7, 40) if mask.kind == "circuit" else (1, 2)
    )


def test_json_and_safetensors_hold_the_same_content(tmp_path):
    mask = edge_mask()
    write_json(mask, tmp_path / "m.json")
    write_safetensors(mask, tmp_path / "m.safetensors")
    assert read_json(tmp_path / "m.json") == read_safetensors(tmp_path / "m.safetensors")

    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["format"] == FORMAT and doc["version"] == VERSION and doc["kind"] == "edge"
    assert doc["model"] == {"name": "googlenet", "architecture": None, "weights_sha256": SHA}
    assert doc["modules"]["inception3b"] == {"channels": [5], "width": 480}
    assert doc["edge"] == {"src": "inception3a", "dst": "inception3b", "src_channels": [1, 2], "dst_channels": [5]}

    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), framework="np") as f:
        header = json.loads(f.metadata()["circuit_mask"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert set(tensors) == {"modules/inception3a", "modules/inception3b", "edge/src_channels", "edge/dst_channels"}
    assert all(t.dtype == np.int64 for t in tensors.values())
    assert tensors["modules/inception3a"].tolist() == [1, 2]
    assert "channels" not in header["modules"]["inception3a"] and header["modules"]["inception3a"]["width"] == 256
    assert header["model"]["weights_sha256"] == SHA


def test_circuit_json_carries_catalog_ids(tmp_path):
    write_mask(circuit_mask(), tmp_path / "m.json")
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["catalog"] == {"circuit_id": 7, "run_id": 3, "concept": "star", "catalog": "/tmp/c.duckdb"}
    assert doc["edge"] is None
    assert list(doc["modules"]) == ["mixed3a", "stem.3", "mixed4b"]  # order kept


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format="something-else"), "not a mask"),
        (lambda d: d.update(version=2), "version 2 is not supported"),
        (lambda d: d.update(kind="neuron"), "unknown mask kind"),
        (lambda d: d["modules"]["mixed3a"].update(channels=[3, 64]), "[64] are outside 0..63"),
        (lambda d: d["modules"]["mixed3a"].update(channels=[3, 3]), "repeated channels"),
        (lambda d: d["modules"]["mixed3a"].update(channels=[1.5]), "is not an integer"),
        (lambda d: d["modules"]["mixed3a"].update(channels=[True]), "is not an integer"),
        (lambda d: d["modules"]["mixed3a"].update(width=0), "width must be a positive integer"),
        (lambda d: d["modules"]["mixed3a"].pop("width"), "needs 'channels' and 'width'"),
        (lambda d: d["model"].update(weights_sha256="xyz"), "64 lowercase hex"),
        (lambda d: d.update(modules={}), "names no modules"),
        (lambda d: d.update(model=[]), "'model' must be an object"),
        (lambda d: d["catalog"].update(circuit_id="7"), "circuit_id must be an integer"),
        (
            lambda d: d.update(edge={"src": "mixed3a", "dst": "stem.3", "src_channels": [], "dst_channels": []}),
            "circuit mask has no edge",
        ),
    ],
)
def test_malformed_json_is_refused_with_its_reason(tmp_path, edit, message):
    doc = mask_to_dict(circuit_mask())
    edit(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(MaskError) as err:
        read_mask(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert isinstance(err.value, CircuitsError)


def test_edge_entry_must_agree_with_modules(tmp_path):
    doc = mask_to_dict(edge_mask())
    doc["edge"]["dst_channels"] = [6]
    (tmp_path / "e.json").write_text(json.dumps(doc))
    with pytest.raises(MaskError, match="dst_channels differ"):
        read_mask(tmp_path / "e.json")
    doc = mask_to_dict(edge_mask())
    doc["edge"] = None
    (tmp_path / "e.json").write_text(json.dumps(doc))
    with pytest.raises(MaskError, match="needs an edge entry"):
        read_mask(tmp_path / "e.json")


def test_unreadable_files_are_refused(tmp_path):
    with pytest.raises(MaskError, match="does not exist"):
        read_mask(tmp_path / "missing.json")
    with pytest.raises(MaskError, match="is a folder"):
        read_mask(tmp_path)
    (tmp_path / "broken.json").write_text('{"format": "circuit-mask", ')
    with pytest.raises(MaskError, match="not valid JSON"):
        read_mask(tmp_path / "broken.json")
    (tmp_path / "noise.bin").write_bytes(bytes(range(256)))
    with pytest.raises(MaskError, match="neither a JSON document nor a safetensors file"):
        read_mask(tmp_path / "noise.bin")
    with pytest.raises(MaskError, match="name the file"):
        write_mask(circuit_mask(), tmp_path / "m.pt")


def test_safetensors_without_mask_header_or_with_stray_tensors(tmp_path):
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(3, np.float32)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(MaskError, match="without a 'circuit_mask' header"):
        read_mask(tmp_path / "weights.safetensors")

    write_safetensors(circuit_mask(), tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), framework="np") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors["modules/extra"] = np.arange(2)
    save_file(tensors, str(tmp_path / "m2.safetensors"), metadata=meta)
    with pytest.raises(MaskError, match=r"unexpected \['modules/extra'\]"):
        read_mask(tmp_path / "m2.safetensors")
    tensors.pop("modules/extra")
    tensors["modules/mixed3a"] = np.array([0.5], np.float32)
    save_file(tensors, str(tmp_path / "m3.safetensors"), metadata=meta)
    with pytest.raises(MaskError, match="integer tensor"):
        read_mask(tmp_path / "m3.safetensors")


def test_a_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "mask.json").write_bytes(pickle.dumps(Evil()))
    (tmp_path / "mask.safetensors").write_bytes(pickle.dumps(Evil()))
    for name in ("mask.json", "mask.safetensors"):
        with pytest.raises(MaskError):
            read_mask(tmp_path / name)
    with pytest.raises(MaskError):
        read_safetensors(tmp_path / "mask.safetensors")
    with pytest.raises(MaskError):
        read_json(tmp_path / "mask.json")
    assert not marker.exists()


def test_catalog_side_never_imports_torch():
    code = "import sys, catalog.mask_file, queries.mask_export; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
