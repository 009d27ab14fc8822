"""Inputs read safely: image files hashed in bounded chunks with a
size cap before decoding, only regular files read, control characters escaped in terminal output,
SIGINT during start-up and during a query is one line and exit 130."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ingest.images import MAX_FILE_BYTES, read_image_dir


def _png(path: Path, seed: int = 0) -> None:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(path)


def test_fifo_named_png_is_skipped_not_read(tmp_path):  # unchecked, ingest would hang on it
    _png(tmp_path / "a.png")
    os.mkfifo(tmp_path / "x.png")
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("set", read_image_dir(tmp_path)), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "reading the folder blocked on the FIFO"
    image_set = out["set"]
    assert len(image_set) == 1
    [(path, reason)] = image_set.skipped
    assert path.endswith("x.png") and "FIFO" in reason


def test_huge_sparse_file_is_skipped_before_reading(tmp_path, monkeypatch):  # unchecked, hashing it took 4.9 GB RSS
    _png(tmp_path / "a.png")
    with open(tmp_path / "big.png", "wb") as f:
        f.write((tmp_path / "a.png").read_bytes())
        f.truncate(4 << 30)  # sparse: 4 GB on paper
    read, real_read = [], os.read

    def counted_read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        read.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counted_read)
    image_set = read_image_dir(tmp_path)
    monkeypatch.undo()
    assert 0 < sum(read) < 1 << 20, sum(read)  # a.png's bytes only: big.png was never read
    assert len(image_set) == 1
    [(path, reason)] = image_set.skipped
    assert path.endswith("big.png") and f"{MAX_FILE_BYTES >> 20} MiB" in reason


def test_hash_is_of_the_bytes_read(tmp_path):
    _png(tmp_path / "a.png", 1)
    image_set = read_image_dir(tmp_path)
    assert image_set.sha256s == (hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest(),)


def test_control_characters_are_escaped_in_terminal_output():
    from circuits.cli.render import format_value, render_table, safe_text

    evil = "m\x1b]0;pwned\x07\x1b[2J\rx\u202e"
    for text in (format_value(evil), render_table([{"model": evil}]), safe_text(evil)):
        assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\u202e" not in text
    assert safe_text(evil) == "m\\x1b]0;pwned\\x07\\x1b[2J\\rx\\u202e"
    assert safe_text("café ✓ 12") == "café ✓ 12"  # printable text is left alone


def test_list_and_show_escape_a_stored_model_path(tmp_path):  # through the CLI
    from typer.testing import CliRunner

    from catalog.engine import close_catalogs_of, open_catalog
    from catalog.sql import run_sql  # noqa: F401 (the catalog's read side is importable)
    from circuits.cli.main import app

    db = tmp_path / "e.duckdb"
    cat = open_catalog(db, create=True)
    from catalog import store

    with cat.writing() as s:
        store.ensure_model(
            s,
            name="evil\x1b[31m\x1b]0;title\x07.py:build",
            architecture="Sequential\x1b[2J",
            weights_sha256="0" * 64,
            layers=[("0\u202e", 3)],
        )
    close_catalogs_of(db)
    r = CliRunner().invoke(app, ["list", "models", "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout and "\\x1b[31m" in r.stdout


def _sql_interrupted_after(query: str, db: str, delay: float, *extra: str) -> tuple[subprocess.Popen, bytes]:
    """A `circuits sql` process sent SIGINT `delay` seconds after it started; (process, stderr)."""
    p = subprocess.Popen(
        [Path(sys.executable).with_name("circuits"), "sql", query, *extra, "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job ignores SIGINT
    )
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    return p, p.communicate(timeout=60)[1]


def test_sigint_during_start_up_is_one_line_and_130(tmp_path):  # unchecked: a traceback or rc -6
    from catalog.admin import init_catalog
    from catalog.engine import close_catalogs_of

    init_catalog(str(tmp_path / "c.duckdb"))
    close_catalogs_of(str(tmp_path / "c.duckdb"))
    seen = set()
    for delay in (0.2, 0.3, 0.45, 0.6, 0.8, 1.2):
        p, err = _sql_interrupted_after("select 1", str(tmp_path / "c.duckdb"), delay)
        text = err.decode()
        if p.returncode == -signal.SIGINT and "circuits" not in text:
            continue  # still in the interpreter's own start-up, before any of this project's code
        assert "nanobind" not in text and "Traceback" not in text, (delay, text[-2000:])
        if p.returncode == 0:
            continue  # it finished first
        assert p.returncode == 130, (delay, p.returncode, text[-2000:])
        lines = [line for line in text.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("interrupted"), text
        seen.add(delay)
    assert seen, "no delay interrupted the command"


def test_an_interrupt_that_a_native_call_turns_into_its_own_error_is_130(tmp_path, monkeypatch):
    """What DuckDB does on Ctrl-C inside a query: the handler's KeyboardInterrupt is caught in the
    native call, which raises RuntimeError("Query interrupted") instead (it was a traceback)."""
    from typer.testing import CliRunner

    import catalog.sql
    from catalog.admin import init_catalog
    from catalog.engine import close_catalogs_of
    from circuits.cli import main

    db = str(tmp_path / "c.duckdb")
    init_catalog(db)
    close_catalogs_of(db)

    def run_sql(*args, **kwargs):
        try:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C, handled by the command line's handler
        except KeyboardInterrupt:
            raise RuntimeError("Query interrupted") from None

    monkeypatch.setattr(catalog.sql, "run_sql", run_sql)  # `circuits sql` imports it when run
    monkeypatch.setitem(main._STATE, "interrupted", False)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main.install_sigint_handler()
        r = CliRunner().invoke(main.app, ["sql", "select 1", "--db", db])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert r.exit_code == 130, r.output
    assert r.stderr.strip().startswith("interrupted: sql stopped") and "Traceback" not in r.output, r.output


@pytest.mark.slow  # a real process and a real query (timing: the first delay may land in start-up)
def test_sigint_during_a_query_is_one_line_and_130(tmp_path):
    """Ctrl-C inside a DuckDB query: DuckDB raises its own RuntimeError("Query interrupted"),
    which must read as the interrupt it is (it was a traceback)."""
    from catalog.admin import init_catalog
    from catalog.engine import close_catalogs_of

    db = str(tmp_path / "c.duckdb")
    init_catalog(db)
    close_catalogs_of(db)
    for delay in (2.0, 4.0, 8.0):  # past the start-up: the query runs until stopped
        p, err = _sql_interrupted_after(
            "select sum(hash(range)) from range(100000000000)", db, delay, "--timeout", "30"
        )
        lines = [line for line in err.decode().splitlines() if line.strip()]
        assert p.returncode == 130 and len(lines) == 1, (delay, p.returncode, err.decode()[-2000:])
        if lines[0].startswith("interrupted: sql stopped"):
            return
        assert lines[0].startswith("interrupted while starting"), lines  # a slow start-up: wait longer
    raise AssertionError("the query was never reached")
