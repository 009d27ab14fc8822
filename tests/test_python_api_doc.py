"""The Python API example in docs/python-api.md (the README's "Python API") runs as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def _first_python_block(text: str) -> str:
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, f"{DOC} has no ```python block"
    return match.group(1)


def test_the_python_api_example_runs_with_a_model_object_it_builds(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from catalog.engine import close_catalogs_of

    code = _first_python_block(DOC.read_text())
    assert "nn.Module" in DOC.read_text() and "model=model" in code  # it passes the object it built
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__doc_example__"}
    try:
        exec(compile(code, str(DOC), "exec"), namespace)
    finally:
        close_catalogs_of(tmp_path / "python-api.duckdb")
    result, mask, effect = namespace["result"], namespace["mask"], namespace["effect"]
    assert result.status == "stored" and [len(c) for c in result.channels] == [3, 3, 3]
    assert sorted(mask.modules) == ["1", "3", "5"]
    assert all(len(m.channels) == 2 for m in mask.modules.values())
    assert mask.model.name == "Sequential" and len(mask.model.weights_sha256) == 64
    written = json.loads((tmp_path / "stripes-k2.mask.json").read_text())
    assert written["model"]["weights_sha256"] == mask.model.weights_sha256
    assert set(effect.intervened) == {"agreement", "clean_top1_prob", "kl"}
