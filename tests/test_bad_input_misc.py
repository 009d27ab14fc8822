"""Ctrl-C says what was kept; masks tolerate a BOM and leading whitespace; outputs are atomic and
never written over an input; refused --db paths create nothing."""

from __future__ import annotations

import json
import os

import pytest
from _helpers_cli import catfish_ingest_args
from typer.testing import CliRunner

from catalog.atomic import atomic_path
from catalog.mask_io import read_mask
from circuits.cli.main import app

runner = CliRunner()


def test_ctrl_c_is_one_line_and_exit_130(catalog_path, monkeypatch):
    import catalog.sql

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(catalog.sql, "run_sql", interrupted)
    r = runner.invoke(app, ["sql", "select 1", "--db", str(catalog_path)])
    assert r.exit_code == 130
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted:") and "nothing changed" in lines[0], r.stderr


def test_ctrl_c_during_ingest_says_the_run_was_not_stored(tmp_path, monkeypatch):
    import ingest.pipeline

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest.pipeline, "ingest_concept", interrupted)
    r = runner.invoke(app, catfish_ingest_args("stripes", str(tmp_path / "c.duckdb"), "--n", "2"))
    assert r.exit_code == 130 and "not stored" in r.stderr, r.output
    assert not (tmp_path / "c.duckdb").exists()  # the catalog this command created, empty, is gone


def _mask_json(tmp_path):
    example = tmp_path / "example.json"
    doc = {
        "format": "circuit-mask",
        "version": 1,
        "kind": "circuit",
        "model": {"name": "m", "weights_sha256": "0" * 64, "architecture": "a"},
        "modules": {"layer1": {"width": 4, "channels": [0, 2]}},
    }
    example.write_text(json.dumps(doc))
    return example


def test_a_mask_with_a_bom_or_leading_whitespace_reads(tmp_path):
    plain = _mask_json(tmp_path)
    expected = read_mask(plain)
    text = plain.read_text()
    for name, data in (("bom.json", b"\xef\xbb\xbf" + text.encode()), ("ws.json", b"\n\n   \t" + text.encode())):
        (tmp_path / name).write_bytes(data)
        assert read_mask(tmp_path / name) == expected


def test_atomic_path_leaves_the_target_untouched_on_failure(tmp_path):
    target = tmp_path / "out.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.pt"]
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".pt" and tmp.parent == tmp_path
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.pt"]


def test_apply_refuses_its_own_weights_even_through_a_link(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    (tmp_path / "link.pt").symlink_to(weights)
    (tmp_path / "m.json").write_text("{}")
    r = runner.invoke(
        app,
        [
            "apply",
            "catfish-mini",
            "--mask",
            str(tmp_path / "m.json"),
            "-o",
            str(tmp_path / "link.pt"),
            "--weights",
            str(weights),
        ],
    )
    assert r.exit_code == 1 and "input of this command" in r.stderr, r.output
    assert weights.read_bytes() == b"weights"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: permissions cannot refuse it")
def test_a_read_only_folder_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = runner.invoke(app, ["db", "init", "--db", str(ro / "c.duckdb")])
        assert r.exit_code == 1 and "not writable" in r.stderr, r.output
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_an_os_error_on_an_output_path_is_one_line(catalog_path, tmp_path, monkeypatch):
    import queries.listing
    import queries.mask_export

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro" / "m.json"))

    monkeypatch.setattr(queries.mask_export, "export_mask", denied)
    monkeypatch.setattr("queries.resolve.resolve_circuit", lambda *a, **k: type("C", (), {"circuit_id": 1})())
    monkeypatch.setattr("queries.listing.resolve_circuit", lambda *a, **k: type("C", (), {"circuit_id": 1})())
    r = runner.invoke(app, ["export", "1", "-o", str(tmp_path / "m.json"), "--db", str(catalog_path)])
    assert r.exit_code == 1, r.output
    assert r.stderr == f"error: {tmp_path / 'ro' / 'm.json'}: Permission denied (check the path and its permissions)\n"


def test_a_library_oserror_subclass_keeps_its_traceback():
    from circuits.cli.main import os_error_message

    class DriverError(OSError):
        pass

    assert os_error_message(DriverError("socket")) is None
    assert (
        os_error_message(FileNotFoundError(2, "No such file or directory", "x.pt"))
        == "x.pt: No such file or directory (check the path and its permissions)"
    )
