"""The library versions an ingest records, read without importing torchvision (its import pulls in
torch._dynamo: ~1.4 s of CPU in every ingest process that builds no torchvision model)."""

from __future__ import annotations

import sys

import pytest


def test_torchvision_version_is_read_without_importing_it(monkeypatch: pytest.MonkeyPatch):
    import torchvision

    from ingest.prepare import library_versions

    expected = torchvision.__version__  # the plain reference, local tag (e.g. "+cu130") included
    monkeypatch.delitem(sys.modules, "torchvision")  # as in a fresh process (put back afterwards)
    versions = library_versions()
    assert "torchvision" not in sys.modules  # an import would have put it back
    assert versions["torchvision"] == expected
    assert set(versions) == {"python", "torch", "torchvision", "numpy", "visual-circuit-catalog"}
