"""Reading concept image folders: order, hashes, corrupt files, empty and missing folders."""

from __future__ import annotations

from pathlib import Path

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


# --- every colour mode converted exactly (NumPy references) -------------------------------------

import struct  # noqa: E402 (after the set-up above)
import zlib  # noqa: E402 (after the set-up above)

from ingest.images import UnusedFile, to_rgb  # noqa: E402 (after the set-up above)


def write_png16(path, arr):
    """A PNG with 16-bit samples written by hand: (H, W) grey, (H, W, 2) grey+alpha, (H, W, 3) RGB."""
    a = np.asarray(arr, dtype=np.uint16)
    a = a[:, :, None] if a.ndim == 2 else a
    h, w, c = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


RNG = np.random.default_rng(7)


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    grey = RNG.integers(0, 65536, (6, 7), dtype=np.uint16)
    grey[0, 0], grey[0, 1] = 0, 65535
    write_png16(tmp_path / "g16.png", grey)
    (img,) = read_image_dir(tmp_path).images
    ref = np.round(grey.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(img, np.repeat(ref[:, :, None], 3, axis=2))
    assert img.mean() < 200  # PIL's own convert("RGB") makes this almost white (mean ≈ 254)


def test_16bit_rgb_png_keeps_its_values(tmp_path):
    rgb = RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    write_png16(tmp_path / "c16.png", rgb)
    (img,) = read_image_dir(tmp_path).images
    assert np.abs(img.astype(int) - np.round(rgb / 257.0)).max() <= 1  # high byte vs rounding


def test_palette_grey_cmyk_and_bilevel_match_numpy(tmp_path):
    rgb = RNG.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    # Palette: 4 colours, indices chosen per pixel.
    palette = RNG.integers(0, 256, (4, 3), dtype=np.uint8)
    idx = RNG.integers(0, 4, (8, 9), dtype=np.uint8)
    p = Image.fromarray(idx, mode="P")
    p.putpalette(palette.flatten().tolist() + [0] * (768 - 12))
    p.save(tmp_path / "a_palette.png")
    grey = rgb[:, :, 0]
    Image.fromarray(grey, mode="L").save(tmp_path / "b_grey.png")
    cmyk = RNG.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    Image.frombytes("CMYK", (9, 8), cmyk.tobytes()).save(tmp_path / "c_cmyk.tif")
    bits = RNG.integers(0, 2, (8, 9)).astype(bool)
    Image.fromarray(bits).convert("1").save(tmp_path / "d_bilevel.png")
    s = read_image_dir(tmp_path)
    got = dict(zip([Path(p).name for p in s.sources], s.images))
    assert np.array_equal(got["a_palette.png"], palette[idx])
    assert np.array_equal(got["b_grey.png"], np.repeat(grey[:, :, None], 3, axis=2))
    c, k = cmyk[:, :, :3].astype(np.float64), cmyk[:, :, 3:].astype(np.float64)
    assert np.abs(got["c_cmyk.tif"].astype(int) - np.round((255 - c) * (255 - k) / 255)).max() <= 1
    assert np.array_equal(got["d_bilevel.png"], np.repeat(np.where(bits, 255, 0)[:, :, None], 3, 2).astype(np.uint8))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_over_white_with_a_note(tmp_path, mode):
    rgb = RNG.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    alpha = RNG.integers(0, 256, (6, 6), dtype=np.uint8)
    if mode == "RGBA":
        Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(tmp_path / "x.png")
        colour = rgb
    elif mode == "LA":
        Image.fromarray(np.dstack([rgb[:, :, 0], alpha]), mode="LA").save(tmp_path / "x.png")
        colour = np.repeat(rgb[:, :, :1], 3, axis=2)
    else:  # palette with one fully transparent entry (GIF-style transparency)
        idx = (rgb[:, :, 0] % 3).astype(np.uint8)
        pal = np.array([[200, 10, 10], [10, 200, 10], [10, 10, 200]], np.uint8)
        im = Image.fromarray(idx, mode="P")
        im.putpalette(pal.flatten().tolist() + [0] * (768 - 9))
        im.info["transparency"] = 0
        im.save(tmp_path / "x.png", transparency=0)
        colour, alpha = pal[idx], np.where(idx == 0, 0, 255).astype(np.uint8)
    s = read_image_dir(tmp_path)
    a = alpha.astype(np.float64)[:, :, None] / 255
    ref = np.round(colour * a + 255 * (1 - a)).astype(np.uint8)
    assert np.abs(s.images[0].astype(int) - ref).max() <= 1
    assert any("transparent pixels composited" in n for n in s.notes)
    # Another background, for dark-on-light concepts.
    black = read_image_dir(tmp_path, background=(0, 0, 0)).images[0]
    assert np.abs(black.astype(int) - np.round(colour * a)).max() <= 1


def test_opaque_alpha_is_dropped_without_a_note(tmp_path):
    rgb = RNG.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, np.full((5, 5), 255, np.uint8)]), mode="RGBA").save(tmp_path / "x.png")
    s = read_image_dir(tmp_path)
    assert np.array_equal(s.images[0], rgb) and not any("transparent" in n for n in s.notes)


def test_webp_bmp_gif_tiff_are_read(tmp_path):
    rgb = np.zeros((12, 12, 3), np.uint8)
    rgb[:, :6] = (250, 20, 20)
    for ext in ("webp", "bmp", "gif", "tiff", "tif"):
        kwargs = {"lossless": True} if ext == "webp" else {}
        Image.fromarray(rgb).save(tmp_path / f"x.{ext}", **kwargs)
    s = read_image_dir(tmp_path)
    assert sorted(Path(p).suffix for p in s.sources) == [".bmp", ".gif", ".tif", ".tiff", ".webp"]
    for img in s.images:
        assert np.abs(img.astype(int) - rgb).max() <= 8  # GIF quantises colours


def test_unused_files_are_reported_and_recursive_reads_subfolders(tmp_path):
    _write(tmp_path / "a.png", (1, 2, 3))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    sub = tmp_path / "more"
    sub.mkdir()
    _write(sub / "b.png", (4, 5, 6))
    s = read_image_dir(tmp_path)
    kinds = {Path(u.path).name: u.kind for u in s.unused}
    assert kinds == {"notes.txt": "format", "broken.jpg": "unreadable", "more": "folder"}
    assert all(isinstance(u, UnusedFile) for u in s.unused)
    line = s.summary()
    assert "\n" not in line and "1 unreadable (broken.jpg)" in line and "notes.txt" in line
    from circuits.cli.render import cli_message

    assert "`recursive=`" in line and "--recursive" in cli_message(line)  # the library names parameters
    assert [p for p, _ in s.skipped] == [str(tmp_path / "broken.jpg")]
    deep = read_image_dir(tmp_path, recursive=True)
    assert [Path(p).name for p in deep.sources] == ["a.png", "b.png"]
    assert {Path(u.path).name for u in deep.unused} == {"notes.txt", "broken.jpg"}
    assert deep.sha256 != s.sha256


def test_tiny_huge_and_animated_images_get_notes(tmp_path):
    Image.new("RGB", (1, 1), (9, 9, 9)).save(tmp_path / "a_tiny.png")
    Image.new("L", (4100, 20), 7).save(tmp_path / "b_huge.png")
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "c_anim.gif", save_all=True, append_images=frames[1:])
    s = read_image_dir(tmp_path)
    text = " | ".join(s.notes)
    assert "a_tiny.png: tiny (1×1 px)" in text and "b_huge.png: huge (4100×20 px)" in text
    assert "c_anim.gif: first of 2 frames" in text


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((4, 8, 3), np.uint8)
    rgb[:, :4] = 255  # left half white
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    (img,) = read_image_dir(tmp_path).images
    assert img.shape == (8, 4, 3)  # shown upright: portrait
    assert img[:4].mean() > 200 and img[4:].mean() < 50  # the white half is now on top


def test_to_rgb_refuses_what_it_cannot_read_faithfully():
    with pytest.raises(ImageSetError, match="outside"):
        to_rgb(Image.fromarray(np.full((2, 2), 3.5, np.float32), mode="F"))
    f = to_rgb(Image.fromarray(np.full((2, 2), 0.5, np.float32), mode="F"))
    assert f.dtype == np.uint8 and (f == 128).all()
