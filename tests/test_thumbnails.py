"""Thumbnails: the catalog tables (migration 0002), the patch computation against a plain
reference, the run's transaction, and `circuits thumbnails RUN` recomputing them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import sqlalchemy as sa
import torch
from _helpers_cli import sql_rows as _sql
from _helpers_cli import tiny_catalog
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from catalog import media, migrate
from catalog.connect import build_engine, resolve_url
from catalog.errors import CatalogError, NotFound
from circuits.cli.main import app

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore:.*random init:UserWarning")


def _png(side: int = 8, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- schema


def test_migration_adds_and_removes_the_tables(tmp_path):
    engine = build_engine(resolve_url(tmp_path / "m.duckdb"), read_only=False, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        migrate.upgrade(conn)
    with engine.connect() as conn:
        tables = set(migrate.user_tables(conn))
        assert {"neuron_patch", "image_thumbnail"} <= tables
        pk = conn.execute(
            sa.text(
                "SELECT constraint_column_names FROM duckdb_constraints() "
                "WHERE table_name = 'neuron_patch' AND constraint_type = 'PRIMARY KEY'"
            )
        ).scalar()
        assert list(pk) == ["run_id", "neuron_id", "rank"]
    with engine.begin() as conn:
        migrate.downgrade(conn, "0001")
    with engine.connect() as conn:
        assert not {"neuron_patch", "image_thumbnail"} & set(migrate.user_tables(conn))
        assert migrate.current_revision(conn) == "0001"
    engine.dispose()
    assert {"neuron_patch", "image_thumbnail"} <= set(media.Base.metadata.tables)  # create_all has them too


# ---------------------------------------------------------------- data functions


@pytest.fixture
def stored_run(tmp_path):
    """A tiny model's run ingested through the CLI from a folder of images."""
    return tiny_catalog(tmp_path, 5)


def test_ingest_stores_patches_and_thumbnails_in_the_run(stored_run):
    db = stored_run["db"]
    rows = _sql(
        db,
        "select neuron_id, count(*) as n, min(rank) as lo, max(rank) as hi, "
        "max(octet_length(data)) as size from neuron_patch group by neuron_id",
    )
    assert len(rows) == 6  # k=2 in each of 3 layers
    assert all(r["n"] == 4 and r["lo"] == 0 and r["hi"] == 3 for r in rows)
    assert all(r["size"] <= media.MAX_IMAGE_BYTES for r in rows)
    assert _sql(db, "select distinct mime from neuron_patch") == [{"mime": "image/webp"}]
    members = _sql(db, "select neuron_id from circuit_neuron order by 1")
    assert sorted(r["neuron_id"] for r in rows) == [m["neuron_id"] for m in members]
    thumbs = _sql(
        db, "select t.width, t.height from image_thumbnail t join example_image e on e.id = t.example_image_id"
    )
    assert thumbs == [{"width": 16, "height": 16}] * 5
    ordered = _sql(db, "select neuron_id, activation from neuron_patch order by neuron_id, rank")
    for nid in {r["neuron_id"] for r in ordered}:
        acts = [r["activation"] for r in ordered if r["neuron_id"] == nid]
        assert acts == sorted(acts, reverse=True)


def test_a_failure_writing_thumbnails_leaves_no_run(stored_run, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(media, "write_patches", boom)
    r = runner.invoke(app, [*stored_run["args"], "--force"])
    assert r.exit_code != 0
    runs = _sql(stored_run["db"], "select status from run order by id")
    assert [x["status"] for x in runs] == ["complete", "failed"]
    assert _sql(stored_run["db"], "select count(distinct run_id) as n from neuron_patch") == [{"n": 1}]


def _patches(db) -> list[dict]:
    """Every stored patch of the catalog, its image as a hash, in (neuron, rank) order."""
    return _sql(
        db,
        "select neuron_id, rank, example_image_id, activation, x0, y0, x1, y1, md5(data) as h "
        "from neuron_patch order by 1, 2",
    )


def test_thumbnails_command_recomputes_the_same_patches(stored_run):
    db = stored_run["db"]
    before = _patches(db)
    engine = build_engine(resolve_url(db), read_only=False, poolclass=sa.pool.NullPool)
    from catalog.engine import close_catalogs_of

    close_catalogs_of(db)
    with engine.begin() as conn:
        conn.execute(sa.text("delete from neuron_patch"))
    engine.dispose()
    r = runner.invoke(app, ["thumbnails", "1", stored_run["model"], "--db", str(db), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "stored 24 patches and 0 new image thumbnails for run 1" in r.output
    after = _patches(db)
    assert after == before


def test_thumbnails_command_refuses_changed_images_and_unknown_runs(stored_run):
    (stored_run["images"] / "0.png").write_bytes(_png(16, seed=9))
    r = runner.invoke(app, ["thumbnails", "1", stored_run["model"], "--db", str(stored_run["db"])])
    assert r.exit_code == 1 and "has changed since the run" in r.output
    r = runner.invoke(app, ["thumbnails", "7", stored_run["model"], "--db", str(stored_run["db"])])
    assert r.exit_code == 1 and "error: no run 7" in r.output


def test_media_write_rules(cat):
    with cat.session() as s, s.begin():
        with pytest.raises(CatalogError, match="not a PNG, WebP or JPEG"):
            media.write_patches(s, 1, [media.PatchRow(1, 1, 0, 1, 1.0, (0, 0, 1, 1), b"GIF89a")])
        big = b"\x89PNG\r\n\x1a\n" + bytes(media.MAX_IMAGE_BYTES)
        with pytest.raises(CatalogError, match="over the"):
            media.write_image_thumbnails(s, [(1, 8, 8, big)])
    with cat.session() as s:
        with pytest.raises(NotFound, match="circuits thumbnails 1"):
            media.patch_png(s, 1, 1, 0)
        with pytest.raises(NotFound):
            media.image_set_thumbnails(s, "0" * 64)


# ---------------------------------------------------------------- computation


def test_receptive_field_of_stacked_convs_is_measured_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 5, stride=2, padding=2)
    ).eval()
    from ingest.thumbnails import receptive_fields

    rf = receptive_fields(model, ["0", "1", "2"], torch.randn(1, 3, 32, 32))
    assert rf == {"0": (3, 3), "1": (5, 5), "2": (9, 9)}


def test_patches_match_a_plain_reference():
    from ingest.thumbnails import ThumbnailConfig, neuron_patches

    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2, padding=1)).eval()
    x = torch.rand(7, 3, 16, 16)
    config = ThumbnailConfig(top=3, size=32, batch_size=3)  # batches of 3: 3 + 3 + 1
    got = neuron_patches(model, ["1", "2"], x, [[0, 4], [2]], mean=(0, 0, 0), std=(1, 1, 1), config=config)
    assert [(p.layer, p.channel) for p in got] == [("1", 0), ("1", 4), ("2", 2)]
    with torch.no_grad():
        a1 = model[1](model[0](x))
        a2 = model[2](a1)
    for p, act in zip(got, (a1[:, 0], a1[:, 4], a2[:, 2])):
        flat = act.flatten(1)  # (N, P)
        best = flat.max(dim=1).values.numpy()
        order = sorted(range(len(x)), key=lambda i: (-best[i], i))[:3]
        assert [img for img, _, _, _ in p.patches] == order
        np.testing.assert_allclose([v for _, v, _, _ in p.patches], best[order], rtol=1e-5)
        for img, _, box, png in p.patches:
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= 16 and 0 <= y0 < y1 <= 16
            h, w = divmod(int(flat[img].argmax()), act.shape[-1])
            scale = 16 // act.shape[-1]
            assert x0 <= (w + 0.5) * scale <= x1 and y0 <= (h + 0.5) * scale <= y1  # the maximum is inside
            im = Image.open(io.BytesIO(png))
            assert max(im.size) == 32 and media.image_mime(png) == "image/webp"
    rf1 = got[0].patches[0][2]
    assert (rf1[2] - rf1[0], rf1[3] - rf1[1]) == (4, 4)  # one 3x3 conv: 3 px, padded to the 4 px minimum


def test_pages_of_a_user_model_whose_name_has_slashes(stored_run):
    """A user model's name is a path (`/…/tiny.py:build`): its neuron links must still resolve."""
    import urllib.parse
    import urllib.request

    from test_serve_support import ServerThread

    server = ServerThread(stored_run["db"])
    try:
        with urllib.request.urlopen(server.url + "/circuit/1", timeout=30) as r:
            page = r.read().decode()
        first = page.split('class="id" href="', 1)[1].split('"', 1)[0]
        assert first.startswith("/neuron/" + urllib.parse.quote(stored_run["model"], safe="") + "/")
        with urllib.request.urlopen(server.url + first, timeout=30) as r:
            neuron = r.read().decode()
        assert r.status == 200 and "Circuits it belongs to" in neuron and "/patch/1/" in neuron
    finally:
        server.close()


def test_png_thumbnails_are_bounded():
    from ingest.thumbnails import png_thumbnail

    noise = np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)  # incompressible
    data = png_thumbnail(noise, 128)
    im = Image.open(io.BytesIO(data))
    assert len(data) <= media.MAX_PNG_BYTES and max(im.size) < 128  # shrunk until it fits
    assert im.size[0] < im.size[1]  # aspect ratio kept (portrait)
    small = png_thumbnail(noise[:10, :10], 64)
    assert Image.open(io.BytesIO(small)).size == (64, 64)  # small crops are enlarged (nearest)


def test_webp_thumbnails_are_smaller_and_close_to_the_pixels():
    from ingest.thumbnails import encode_thumbnail, png_thumbnail

    rng = np.random.default_rng(0)
    coarse = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((64, 64), Image.Resampling.BICUBIC)
    photo = np.clip(np.asarray(coarse) + rng.normal(0, 6, (64, 64, 3)), 0, 255).astype(np.uint8)  # smooth + grain
    webp, png = encode_thumbnail(photo, 64), png_thumbnail(photo, 64)
    assert media.image_mime(webp) == "image/webp" and media.image_mime(png) == "image/png"
    assert len(webp) * 4 < len(png)  # measured: 1.2 kB against 8.7 kB
    back = np.asarray(Image.open(io.BytesIO(webp)).convert("RGB"), dtype=np.int16)
    assert back.shape == photo.shape and np.abs(back - photo).mean() < 8  # lossy: mostly the grain (5.9 of 255)


def test_image_mime_by_signature():
    assert media.image_mime(b"\xff\xd8\xff\xe0" + bytes(8)) == "image/jpeg"
    assert media.image_mime(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert media.image_mime(b"RIFF\0\0\0\0WAVEfmt ") is None and media.image_mime(b"GIF89a") is None
