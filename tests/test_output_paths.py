"""`check_output_path`: an output is never one of the command's inputs:
same file by path, symlink or hard link; inside an image folder; the bundled weights; the caches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from circuits.cli.validate import InputError, catalog_files, check_output_path, model_file


def test_links_and_folders_are_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cat.duckdb").write_bytes(b"x")
    os.link(tmp_path / "cat.duckdb", tmp_path / "hard.json")
    (tmp_path / "soft.json").symlink_to(tmp_path / "cat.duckdb")
    inputs = catalog_files("cat.duckdb")
    for out in ("hard.json", "soft.json", "./cat.duckdb.wal"):
        with pytest.raises(InputError, match="also an input"):
            check_output_path(out, suffixes=(), inputs=inputs)
    (tmp_path / "imgs").mkdir()
    with pytest.raises(InputError, match="inside imgs"):
        check_output_path("imgs/plot.png", suffixes=(".png",), folders=("imgs",))
    assert check_output_path("plot.png", suffixes=(".png",), inputs=inputs, folders=("imgs",)) == Path("plot.png")
    assert model_file("nets/tiny.py:build") == Path("nets/tiny.py") and model_file("catfish-mini") is None


def test_bundled_weights_and_caches_are_inputs(tmp_path, monkeypatch):
    bundled = Path(__file__).resolve().parents[1] / "ingest" / "weights" / "catfish_mini.pt"
    if os.stat(bundled).st_dev == os.stat(tmp_path).st_dev:
        os.link(bundled, tmp_path / "copy.pt")
    with pytest.raises(InputError, match="bundled weights"):
        check_output_path(bundled, suffixes=(".pt",))
    if (tmp_path / "copy.pt").exists():  # a hard link of it (same file system only)
        with pytest.raises(InputError, match="bundled weights"):
            check_output_path(tmp_path / "copy.pt", suffixes=(".pt",))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "googlenet.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"w")
    with pytest.raises(InputError, match="model cache"):
        check_output_path(cached, suffixes=(".pth",))
