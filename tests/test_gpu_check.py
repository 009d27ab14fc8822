"""`bench/gpu_check.sh`, the first thing to run on a GPU machine, must not rot before a GPU runs it.

By default its dry mode runs with a stand-in Python that records each command instead of running it:
the script's steps, its summary table, and every command line it builds (checked against the real
`circuits` CLI and `bench/bench_cla.py`'s options) in well under a second. The real dry run on the
CPU (eight Python processes that import torch: ~28 s on a quiet 2-core machine) is `slow`; the
commands it runs are each covered by their own default tests (test_pipeline, test_masks_cli,
test_masks_apply; the CLA fast paths in test_cla*)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("gpu tests", "cla googlenet", "cla resnet50", "ingest", "export", "apply", "ablate")

# Records its arguments (one JSON list a line) and prints what the script's result patterns look
# for; `-S` keeps its start-up to a few milliseconds.
STAND_IN = """#!{python} -S
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STAND_IN_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
if args[:2] == ["-m", "pytest"]:
    print("3 tests collected")
elif args[0].endswith("bench_cla.py"):
    print("  attribute 0.1 s, reference 0.2 s")
elif args[0] == "-c" and args[2] == "ingest":
    print("stored run 1")
elif args[0] == "-c" and args[2] == "ablate":
    print("  accuracy 0.5")
else:
    print("done")
"""


def _table(stdout: str) -> list[str]:
    return stdout[stdout.index("gpu_check on cpu") :].splitlines()


def test_gpu_check_dry_run_builds_valid_commands_and_prints_one_table(tmp_path):
    from typer.main import get_command

    from circuits.cli.main import app

    stand_in, log = tmp_path / "python", tmp_path / "calls.jsonl"
    stand_in.write_text(STAND_IN.format(python=sys.executable))
    stand_in.chmod(0o755)
    env = {**os.environ, "PYTHON": str(stand_in), "STAND_IN_LOG": str(log)}
    out = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", "--dry", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    table = _table(out.stdout)
    assert table[1].split() == ["step", "status", "seconds", "result"]
    rows = {line[:14].strip(): line[14:].split() for line in table[2 : 2 + len(STEPS)]}
    assert tuple(rows) == STEPS and all(r[0] == "ok" for r in rows.values()), table
    assert "tests collected" in " ".join(rows["gpu tests"]) and "attribute" in rows["cla resnet50"]
    assert table[-1].startswith("total ")

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == len(STEPS)
    # 1. the gpu tests: only collected, from files that exist and hold gpu-marked tests
    pytest_call = calls[0]
    assert pytest_call[:2] == ["-m", "pytest"] and "--collect-only" in pytest_call and "gpu" in pytest_call
    files = [a for a in pytest_call if a.startswith("tests/")]
    assert files and all("pytest.mark.gpu" in (ROOT / f).read_text() for f in files)
    # 2-3. the benchmark: options its parser declares, cases it knows
    bench_src = (ROOT / "bench" / "bench_cla.py").read_text()
    declared = set(re.findall(r'add_argument\(\s*"(--[a-z-]+)"', bench_src))
    for call, case in zip(calls[1:3], ("googlenet", "resnet50")):
        assert call[0] == "bench/bench_cla.py" and call[call.index("--case") + 1] == case
        assert {a for a in call if a.startswith("--")} <= declared, (call, declared)
        assert f'"{case}"' in bench_src
    # 4-7. the circuits commands: each parses against the real CLI (options, types, choices)
    root = get_command(app)
    for call, name in zip(calls[3:], ("ingest", "export", "apply", "ablate")):
        assert call[0] == "-c" and "main()" in call[1] and call[2] == name
        command = root.commands[name]
        ctx = command.make_context(name, list(call[3:]), parent=root.make_context("circuits", [name]))
        assert not ctx.args, (name, ctx.args)  # no stray arguments
    assert "--dry" not in " ".join(map(" ".join, calls))


@pytest.mark.slow  # the default test above checks the script's commands with a stand-in Python
def test_gpu_check_dry_run_on_cpu_passes_every_step_and_prints_one_table(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", "--dry", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,  # a loaded shared CPU: 370 s measured with all eight processes slowed
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    table = _table(out.stdout)
    assert table[1].split() == ["step", "status", "seconds", "result"]
    rows = {line[:14].strip(): line[14:].split() for line in table[2 : 2 + len(STEPS)]}
    assert tuple(rows) == STEPS
    assert all(r[0] == "ok" for r in rows.values()), table
    assert "tests collected" in " ".join(rows["gpu tests"])  # the gpu-marked tests import and are found
    assert "attribute" in rows["cla googlenet"] and "attribute" in rows["cla resnet50"]
    assert (tmp_path / "pruned.pt").exists() and table[-1].startswith("total ")
