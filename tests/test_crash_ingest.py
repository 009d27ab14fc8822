"""SIGKILL `circuits ingest` at 22 random moments: never a half-written run, exact edge counts.

Slow (a fresh process per kill): `pytest -m slow tests/test_crash_ingest.py`. The moments are drawn
(seeded) over the whole life of an ingest, from interpreter start-up through the final commit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import bad_input_cases as bic
import duckdb
import numpy as np
import pytest
from _helpers_cli import noise_images

pytestmark = pytest.mark.slow
KILLS = 22
EDGES = 6 * 8 + 8 * 5  # the tiny model's layer widths 6, 8, 5
K = 2


def _check(db: Path) -> int:
    """Assert the catalog holds whole runs only; return the number of complete runs."""
    if not db.exists():
        return 0
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = {t for (t,) in con.execute("select table_name from duckdb_tables()").fetchall()}
        if "run" not in tables:
            return 0  # killed while the new catalog was being created
        runs = con.execute("select id, status from run").fetchall()
        assert {s for _, s in runs} <= {"complete", "failed"}, runs
        for run_id, status in runs:
            # Every score is in `run_matrix` (dense, per pair); `edge` holds each pair's top edges only.
            n = con.execute("select coalesce(sum(n_src * n_dst), 0) from run_matrix where run_id = ?", [run_id])
            n = n.fetchone()[0]
            assert n == (EDGES if status == "complete" else 0), (run_id, status, n)
            top = con.execute("select count(*) from edge where run_id = ?", [run_id]).fetchone()[0]
            assert (0 < top <= EDGES) if status == "complete" else top == 0, (run_id, status, top)
            circuits = con.execute("select id from circuit where run_id = ?", [run_id]).fetchall()
            assert (len(circuits) >= 1) == (status == "complete"), (run_id, status, circuits)
            for (cid,) in circuits:
                neurons = con.execute("select count(*) from circuit_neuron where circuit_id = ?", [cid]).fetchone()[0]
                assert neurons == 3 * K, (cid, neurons)
        return sum(1 for _, s in runs if s == "complete")
    finally:
        con.close()


def test_sigkill_at_random_moments_leaves_whole_runs_only(tmp_path):
    (tmp_path / "tiny.py").write_text(bic.TINY_MODEL)
    imgs = noise_images(tmp_path / "imgs", 24, 32)
    db = tmp_path / "c.duckdb"
    exe = Path(sys.executable).parent / "circuits"
    argv = [
        str(exe),
        "ingest",
        "tiny.py:build",
        "--concept",
        "noise",
        "--images",
        str(imgs),
        "--layers",
        "1,3,5",
        "--k",
        str(K),
        "--db",
        str(db),
        "--force",
    ]
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=tmp_path, check=True, capture_output=True)
    full = time.perf_counter() - t0
    assert _check(db) == 1
    moments = np.random.default_rng(13).uniform(0.05 * full, 1.1 * full, KILLS)
    outcomes = []
    for delay in moments:
        before = _check(db)
        proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(delay))
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=120)
        after = _check(db)
        assert after in (before, before + 1), (delay, before, after)
        outcomes.append((round(float(delay), 2), code, after - before))
    # The draw covers both sides of the commit: some kills lost the run, some came after it.
    assert any(o[2] == 0 for o in outcomes), outcomes
    r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)  # the catalog still works
    assert r.returncode == 0, r.stderr
    assert _check(db) >= 2
    print(f"full ingest {full:.1f} s; kills (delay s, exit, runs added): {outcomes}", file=sys.stderr)
