"""Reading concept image folders: order, hashes, corrupt files, empty and missing folders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ingest.images import ImageSetError, read_image_dir, rendered_image_set


def _write(path, color, size=(8, 8)):
    Image.new("RGB", size, color).save(path)


def test_reads_sorted_and_hashes_by_content(tmp_path):
    _write(tmp_path / "b.png", (0, 255, 0))
    _write(tmp_path / "a.jpg", (255, 0, 0))
    (tmp_path / "notes.txt").write_text("not an image")
    s = read_image_dir(tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in s.sources] == ["a.jpg", "b.png"]
    assert s.images[1].shape == (8, 8, 3) and s.images[1][0, 0].tolist() == [0, 255, 0]
    again = read_image_dir(tmp_path)
    assert again.sha256 == s.sha256
    _write(tmp_path / "b.png", (0, 0, 255))
    assert read_image_dir(tmp_path).sha256 != s.sha256


def test_corrupt_file_is_skipped_and_named(tmp_path):
    _write(tmp_path / "good.png", (1, 2, 3))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    s = read_image_dir(tmp_path)
    assert len(s) == 1
    assert len(s.skipped) == 1 and s.skipped[0][0].endswith("broken.png")


@pytest.mark.parametrize("case", ["missing", "file", "empty", "all-corrupt"])
def test_bad_folders_are_clear_errors(tmp_path, case):
    target = tmp_path / "x"
    if case == "file":
        target.write_text("hi")
    elif case == "empty":
        target.mkdir()
    elif case == "all-corrupt":
        target.mkdir()
        (target / "a.png").write_bytes(b"garbage")
    with pytest.raises(ImageSetError) as info:
        read_image_dir(target)
    assert str(target) in str(info.value)
    assert "\n" not in str(info.value)


def test_rendered_sets_hash_pixels():
    px = np.zeros((3, 4, 4, 3), np.uint8)
    a = rendered_image_set("catfish:x", px)
    px2 = px.copy()
    px2[2, 0, 0, 0] = 1
    b = rendered_image_set("catfish:x", px2)
    assert a.sha256 != b.sha256 and a.sha256s[:2] == b.sha256s[:2]
