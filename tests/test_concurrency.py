"""Writers hold the catalog only to write: readers of a DuckDB file are not locked out while an
ingest computes, a writer waits for a file another process holds, and concurrent writers of the
same run store it once (`run_key`), on both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from _helpers_catalog import write_run
from _helpers_cli import sql_rows as _sql_json
from typer.testing import CliRunner

from catalog import store
from catalog.engine import close_catalogs_of, open_catalog
from catalog.errors import CatalogLocked
from circuits.cli.main import app

pytestmark = pytest.mark.filterwarnings("ignore::ingest.zoo.specs.RandomInitWarning")

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

TINY_MODEL = """
import torch.nn as nn

def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU())
"""

# An ingest whose attribution pauses until a file appears (the test's stand-in for a long CLA).
PAUSING_INGEST = """
import importlib, os, sys, time

attribute_module = importlib.import_module("ingest.cla.attribution")

real = attribute_module.attribute

def paused(*args, **kwargs):
    print("computing", flush=True)
    while not os.path.exists(os.environ["RELEASE_FILE"]):
        time.sleep(0.05)
    return real(*args, **kwargs)

attribute_module.attribute = paused
from circuits.cli.main import main
sys.argv = ["circuits", *sys.argv[1:]]
main()
"""


def _python(code: str, *argv: str, env: dict[str, str] | None = None, stderr: int | None = subprocess.STDOUT):
    """`python -c CODE ARGV…` started in the background, its output read as text (stderr joins
    stdout by default)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
    )


class _Lines:
    """Collects a subprocess's output lines on a thread so the test can wait for one."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"no {text!r} in {self.lines}"
            assert self.proc.poll() is None or self._thread.is_alive(), f"exited without {text!r}: {self.lines}"
            time.sleep(0.05)


def test_readers_are_not_locked_out_while_an_ingest_computes(tmp_path):
    (tmp_path / "tiny.py").write_text(TINY_MODEL)
    db = str(tmp_path / "c.duckdb")
    assert runner.invoke(app, ["db", "init", "--db", db]).exit_code == 0
    close_catalogs_of(db)
    release = tmp_path / "release"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RELEASE_FILE": str(release), "CIRCUITS_LOCK_WAIT": "60"}
    proc = _python(
        PAUSING_INGEST,
        *("ingest", f"{tmp_path / 'tiny.py'}:build", "--concept", "noise", "--dataset", "catfish:stripes"),
        *("--n", "4", "--layers", "1,3", "--k", "2", "--db", db),
        env=env,
    )
    out = _Lines(proc)
    try:
        out.wait_for("computing")
        # mid-computation: the file is free for readers (the fast `sql` path, and `list`/`show`)
        assert _sql_json(db, "select count(*) as n from run") == [{"n": 0}]
        listed = runner.invoke(app, ["list", "runs", "--db", db])
        assert listed.exit_code == 0, listed.output
        # a reader still holds the file (`list` keeps its catalog open) when the writer gets to
        # write: the writer says so and waits instead of failing
        release.touch()
        out.wait_for("is locked by another process; waiting")
        assert proc.poll() is None
        close_catalogs_of(db)
        assert proc.wait(timeout=60) == 0, "".join(out.lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out._thread.join(timeout=5)
    assert any("stored run" in line for line in out.lines), out.lines
    assert _sql_json(db, "select status, count(*) as n from run group by status") == [{"status": "complete", "n": 1}]
    assert _sql_json(db, "select sum(n_src * n_dst) as n from run_matrix") == [{"n": 4 * 5}]  # every score


@contextmanager
def _held(path, seconds: float):
    """Another process holding the DuckDB file `path` (read-only) for `seconds`; killed at the end."""
    holder = _python(
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print('ready', flush=True); time.sleep(float(sys.argv[2]))",
        str(path),
        str(seconds),
        stderr=None,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_writer_gives_up_after_the_wait_with_one_line(catalog_path, monkeypatch, capsys):
    with _held(catalog_path, 60):
        monkeypatch.setenv("CIRCUITS_LOCK_WAIT", "0.5")
        with pytest.raises(CatalogLocked, match="still locked by another process after 0 s") as err:
            open_catalog(catalog_path, wait=None)
        assert "\n" not in str(err.value)
        assert "is locked by another process; waiting" in capsys.readouterr().err
    with open_catalog(catalog_path, wait=None).writing() as s:  # free again
        assert store.ensure_concept(s, "x") > 0


def test_reads_between_computations_wait_for_the_file(catalog_path, capsys):
    """`Catalog.reading` (the ingest pipeline's reads: is this run stored? its circuit of this k?)
    waits for a file another process holds, as `writing` does, instead of failing at once."""
    cat = open_catalog(catalog_path)
    cat.release()
    with _held(catalog_path, 0.8) as holder:
        with pytest.raises(CatalogLocked, match="in use by another process"), cat.reading(wait=0):
            pass
        with cat.reading(wait=60) as s:  # the holder exits after 0.8 s
            assert store.find_complete_run(s, "0" * 64) is None
        assert holder.poll() is not None
        assert "is locked by another process; waiting" in capsys.readouterr().err
    cat.close()


_WRITE_CONCEPT = (
    "import sys; from catalog import store; from catalog.engine import open_catalog; "
    "cat = open_catalog(sys.argv[1]); s = cat.session(); s.begin(); store.ensure_concept(s, 'from-writer'); "
    "s.commit(); print('written', flush=True)"
)


def test_serve_leaves_the_file_free_for_writers_between_requests(catalog_path):
    import urllib.request

    pytest.importorskip("jinja2")
    from circuits.web.server import make_server

    server = make_server(str(catalog_path), port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert urllib.request.urlopen(base + "/").status == 200
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        writer = subprocess.run(
            [sys.executable, "-c", _WRITE_CONCEPT, str(catalog_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert writer.returncode == 0 and "written" in writer.stdout, writer.stderr
        page = urllib.request.urlopen(base + "/sql?q=select+name+from+concept").read().decode()
        assert "from-writer" in page
    finally:
        server.shutdown()
        server.server_close()
        server.cat.close()
        thread.join()


# ---------------------------------------------------------------- one complete run per key

LAYERS = [("l0", 3), ("l1", 4)]


def _write(s, key="k" * 64, value=1.0, **over):
    model = store.ensure_model(s, name="toy", architecture="cnn", weights_sha256="a" * 64, layers=LAYERS)
    concept = store.ensure_concept(s, "star")
    return write_run(s, model, concept, [np.full((3, 4), value, np.float32)], key, n_images=1, **over)


def test_a_second_complete_run_with_the_key_is_refused_replaced_or_re_keyed_on_delete(db_url):
    cat = open_catalog(db_url)
    with cat.writing() as s:
        first = _write(s)
    with cat.writing() as s:
        with pytest.raises(store.RunExists) as err:
            _write(s, value=2.0)
        assert err.value.run_id == first
        assert store.ensure_concept(s, "still-usable") > 0  # the transaction goes on
    with cat.session() as s:
        assert [r.id for r in store.list_runs(s, include_failed=True)] == [first]  # nothing left behind
        assert store.read_run_matrices(s, first)[0][0, 0] == 1.0
    with cat.writing() as s:
        forced = _write(s, value=3.0, replace=True)
    with cat.session() as s:
        assert store.find_complete_run(s, "k" * 64).id == forced
    with cat.writing() as s:
        store.delete_run(s, forced)
    with cat.session() as s:
        assert store.find_complete_run(s, "k" * 64).id == first  # the key falls back to the older run
    with cat.writing() as s:
        store.delete_run(s, first)
    with cat.session() as s:
        assert store.find_complete_run(s, "k" * 64) is None


@pytest.mark.pg
def test_concurrent_writers_store_one_run_model_and_concept(pg_url):
    """Threads writing the same model, concept and run at once on PostgreSQL: one of each."""
    barrier = threading.Barrier(4)
    results: list[object] = []

    def writer() -> None:
        cat = open_catalog(pg_url)
        barrier.wait()
        try:
            with cat.writing() as s:
                results.append(_write(s))
        except store.RunExists as exc:
            results.append(("reused", exc.run_id))

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if isinstance(r, int)]
    assert len(results) == 4 and len(winners) == 1
    assert all(r == ("reused", winners[0]) for r in results if not isinstance(r, int))
    counts = _sql_json(
        pg_url,
        "select (select count(*) from model) as m, (select count(*) from concept) as c, "
        "(select count(*) from run) as r, (select sum(n_src * n_dst) from run_matrix) as e, "
        "(select count(*) from neuron) as n",
    )
    assert counts == [{"m": 1, "c": 1, "r": 1, "e": 12, "n": 7}]


# ---------------------------------------------------------------- N processes, one PostgreSQL catalog

BROKEN_MODEL = '''
import torch
import torch.nn as nn


class Broken(nn.Module):
    """Fine for the layer-width probe and the one-image preflight; fails in attribution (an injected failure)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU())

    def forward(self, x):
        if torch.is_grad_enabled() and x.shape[0] > 1:  # the one-image preflight passes; attribution fails
            raise RuntimeError("injected failure")
        return self.net(x)


def broken():
    return Broken()
'''
# five catfish-mini jobs: three runs (stripes twice with two k, star, dots) → 5 circuits
JOBS = [
    {"model": "catfish-mini", "concept": "stripes", "dataset": "catfish:stripes", "k": 2},
    {"model": "catfish-mini", "concept": "stripes", "dataset": "catfish:stripes", "k": 3},
    {"model": "catfish-mini", "concept": "star", "dataset": "catfish:star", "k": 2},
    {"model": "catfish-mini", "concept": "dots", "dataset": "catfish:dots", "k": 2},
    {"model": "catfish-mini", "concept": "dots", "dataset": "catfish:dots", "k": [1, 2, 2, 2, 1]},
]
BROKEN_JOB = {
    "model": "broken.py:broken",
    "concept": "broken",
    "dataset": "catfish:star",
    "layers": "net.0,net.2",
    "k": 2,
}


@pytest.mark.pg
# Two racing processes by default (every job list overlaps the other; one injects the failure);
# four in the slow suite (each process imports torch: ~2x the time on two cores).
@pytest.mark.parametrize("n_processes", [pytest.param(4, marks=pytest.mark.slow), 2])
def test_processes_ingesting_overlapping_jobs_store_every_job_once(tmp_path, empty_pg_url, n_processes):
    """`ingest-many` processes, overlapping job lists, one uninitialised PostgreSQL database:
    every job present exactly once, exact edge counts, failed rows only for the injected failure."""
    import yaml

    (tmp_path / "broken.py").write_text(BROKEN_MODEL)
    files = []
    for p in range(n_processes):
        jobs = [{**JOBS[(p + i) % len(JOBS)], "n": 3} for i in range(4)]  # four of the five jobs: lists overlap
        if p % 2:
            jobs.insert(1, {**BROKEN_JOB, "n": 3})  # injected in two of the lists
        files.append(tmp_path / f"jobs{p}.yaml")
        files[-1].write_text(yaml.safe_dump(jobs))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cli = "from circuits.cli.main import main; main()"
    options = ("--workers", "0", "--retries", "0", "--db", empty_pg_url)
    procs = [_python(cli, "ingest-many", str(f), *options, env=env, stderr=subprocess.PIPE) for f in files]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(range(n_processes), outs):
        assert procs[p].returncode == (1 if p % 2 else 0), (out, err)
        if p % 2:
            assert "injected failure" in err and err.count("\nerror:") + err.startswith("error:") == 1
    q = lambda sql: _sql_json(empty_pg_url, sql)  # noqa: E731 (a one-line helper local to this test)
    circuits = q(
        "select co.name as concept, c.k::text as k, count(*) as n from circuit c join run r on r.id = c.run_id "
        "join concept co on co.id = r.concept_id group by 1, 2 order by 1, 2"
    )
    assert len(circuits) == len(JOBS) and all(row["n"] == 1 for row in circuits), circuits
    runs = q(
        "select co.name as concept, r.status as status, count(*) as n from run r "
        "join concept co on co.id = r.concept_id group by 1, 2 order by 1, 2"
    )
    assert runs == [
        {"concept": "broken", "status": "failed", "n": n_processes // 2},  # the lists that inject it
        {"concept": "dots", "status": "complete", "n": 1},
        {"concept": "star", "status": "complete", "n": 1},
        {"concept": "stripes", "status": "complete", "n": 1},
    ]
    assert q("select count(*) as n from model") == [{"n": 2}] and q("select count(*) as n from run_key") == [{"n": 3}]
    widths = {row["name"]: row["width"] for row in q("select name, width from layer")}
    for row in q(
        "select r.id as id, r.layer_names as layers, "
        "(select sum(m.n_src * m.n_dst) from run_matrix m where m.run_id = r.id) "
        "as n from run r where r.status = 'complete'"
    ):
        layers = row["layers"] if isinstance(row["layers"], list) else json.loads(row["layers"])
        assert row["n"] == sum(widths[a] * widths[b] for a, b in zip(layers, layers[1:])), row
