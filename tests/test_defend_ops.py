"""`circuits defend` run like `ingest`: it creates a missing catalog, takes --threads, holds the
catalog only to read and write (a concurrent `circuits sql` works mid-run), and prints progress
lines with an ETA, at most every 10 s, when stderr is not a terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.engine import close_catalogs_of
from circuits.cli.main import app
from circuits.cli.progress_log import format_seconds, progress_lines

pytestmark = pytest.mark.filterwarnings("ignore::ingest.zoo.specs.RandomInitWarning")

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
# the smallest sweep that runs every stage: one text circuit, circuit pruning, 2 random circuits
TINY = [
    "--k",
    "1",
    "--kinds",
    "circuit",
    "--n-text",
    "8",
    "--n-attack",
    "12",
    "--n-clean",
    "2",
    "--keep",
    "stripes_checker,stripes_dots",
    "--baselines",
    "2",
    "--holdout-seeds",
    "none",
    "--device",
    "cpu",
]


def test_progress_lines_at_most_every_ten_seconds_with_an_eta():
    now = [100.0]
    out = io.StringIO()
    update = progress_lines(out, clock=lambda: now[0])
    for step in range(0, 11):  # a stage of 10 steps, 4 s each
        update("pruning", step, 10)
        now[0] += 4
    lines = out.getvalue().splitlines()
    # the first update at once, then one line per 10 s at most: t = 0, 12, 24, 36 s
    assert [line.split("]")[0].strip("[ ") for line in lines] == ["0s", "12s", "24s", "36s"]
    assert lines[0].endswith("pruning 0/10 (0%), ETA ?")
    assert lines[1].endswith("pruning 3/10 (30%), ETA 28s")  # 4 s per step, 7 steps left
    assert lines[3].endswith("pruning 9/10 (90%), ETA 4s")
    # a stage counting again (the second text circuit's attribution) starts its own clock
    now[0] += 60
    update("attribution", 5, 8)
    assert out.getvalue().splitlines()[-1].endswith("attribution 5/8 (62%), ETA ?")
    assert format_seconds(3 * 3600 + 5 * 60) == "3h05m" and format_seconds(192) == "3m12s"


def test_defend_creates_the_catalog_takes_threads_and_lets_the_file_go_while_computing(tmp_path, monkeypatch):
    import torch

    from catalog.engine import cached_catalog
    from ingest.defence import attack_eval

    db = tmp_path / "new" / "defence.duckdb"
    db.parent.mkdir()
    real = attack_eval.evaluate_attack
    held: list[tuple[int, int]] = []
    threads: list[int] = []

    def evaluate(*args, **kwargs):  # mid-computation: no connection to the file is open or pooled
        pool = cached_catalog(str(db)).engine.pool
        held.append((pool.checkedout(), pool.checkedin()))
        threads.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(attack_eval, "evaluate_attack", evaluate)
    before = torch.get_num_threads()
    try:
        r = runner.invoke(app, ["defend", "typo-mini", *TINY, "--threads", "1", "--db", str(db)])
    finally:
        torch.set_num_threads(before)
        close_catalogs_of(str(db))
    assert r.exit_code == 0, r.output
    assert db.exists() and "recommended: circuit" in r.stdout
    assert held and all(h == (0, 0) for h in held), held
    assert threads and set(threads) == {1}
    # stderr is not a terminal here: progress comes as lines with an ETA, not a bar
    lines = [line for line in r.stderr.splitlines() if line.startswith("[")]
    assert lines and "text circuit 0/1" in lines[0] and lines[0].endswith("ETA ?"), r.stderr


def test_defend_bad_threads_writes_nothing(tmp_path):
    db = tmp_path / "none.duckdb"
    r = runner.invoke(app, ["defend", "typo-mini", *TINY, "--threads", "0", "--db", str(db)])
    assert r.exit_code == 1 and r.output.strip().startswith("error:") and "--threads" in r.output
    assert not db.exists()


CLI = "import sys; from circuits.cli.main import main; sys.argv = ['circuits', *sys.argv[1:]]; main()"
# A defend whose evaluations pause until a file appears: the test queries the catalog meanwhile.
PAUSING_DEFEND = """
import os, sys, time
from ingest.defence import attack_eval

real, calls = attack_eval.evaluate_attack, [0]

def paused(*args, **kwargs):
    calls[0] += 1
    print(f"evaluating {calls[0]}", flush=True)
    while calls[0] <= 2 and not os.path.exists(os.environ["RELEASE_FILE"] + str(calls[0])):
        time.sleep(0.05)
    return real(*args, **kwargs)

attack_eval.evaluate_attack = paused
from circuits.cli.main import main
sys.argv = ["circuits", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_circuits_sql_works_during_a_defend_run(tmp_path):
    db = str(tmp_path / "c.duckdb")
    release = tmp_path / "release"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RELEASE_FILE": str(release), "CIRCUITS_LOCK_WAIT": "60"}
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSING_DEFEND, "defend", "typo-mini", *TINY, "--threads", "1", "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 120
        while not any(text in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, lines
            time.sleep(0.05)

    def sql(query: str) -> list[dict]:
        out = subprocess.run(
            [sys.executable, "-c", CLI, "sql", query, "--db", db, "-f", "json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    try:
        wait_for("evaluating 1")  # the text circuit is stored; the first evaluation computes
        assert sql("select status, count(*) as n from run group by status") == [{"status": "complete", "n": 1}]
        assert sql("select count(*) as n from intervention") == [{"n": 0}]
        (tmp_path / "release1").touch()
        wait_for("evaluating 2")  # the first evaluation was written in its own short transaction
        assert sql("select count(*) as n from intervention") == [{"n": 1}]
        (tmp_path / "release2").touch()
        assert proc.wait(timeout=300) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    assert any("recommended: circuit" in line for line in lines), lines
    assert sql("select count(*) as n from intervention") == [{"n": 2 + 2}]  # 2 random circuits + 2 classes
