"""`ingest.threads`: the default thread count (CPUs minus load, OMP_NUM_THREADS wins) and the
wait policy set before torch loads (by the CLI or the `set_wait_policy` helper, never by an import), inherited by child processes; threads set only when asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ingest import threads

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_default(monkeypatch):
    threads.default_threads.cache_clear()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    threads.default_threads.cache_clear()
    torch.set_num_threads(before)


@pytest.mark.parametrize("cpus, load, expected", [(2, 0.1, 2), (2, 0.9, 1), (2, 6.0, 1), (16, 3.4, 13), (16, 0.0, 16)])
def test_default_threads_is_free_cpus(monkeypatch, cpus, load, expected):
    monkeypatch.setattr(threads, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert threads.default_threads() == expected


def test_omp_num_threads_wins_and_default_is_decided_once(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads.default_threads() == 3  # cached: a process's own load must not shrink it later


def test_usable_cpus_respects_a_cgroup_quota(monkeypatch):
    monkeypatch.setattr(threads, "_cgroup_cpus", lambda: 1.5)
    assert threads.usable_cpus() == 1
    monkeypatch.setattr(threads, "_cgroup_cpus", lambda: None)
    assert threads.usable_cpus() == len(os.sched_getaffinity(0))


def test_configure_sets_torch_threads():
    assert threads.configure(1) == 1 and torch.get_num_threads() == 1
    with pytest.raises(ValueError):
        threads.configure(0)


def _child(code: str, env_extra: dict[str, str] | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(env_extra or {})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_ingest_changes_no_process_state_the_helper_and_the_cli_do():
    quiet = _child(
        "import json, os, sys\n"
        "import ingest, ingest.pipeline, ingest.fanout.many\n"
        "print(json.dumps({'env': os.environ.get('OMP_WAIT_POLICY'), 'torch': 'torch' in sys.modules}))"
    )
    assert quiet == {"env": None, "torch": False}
    got = _child(
        "import json, os, subprocess, sys\n"
        "from ingest.threads import set_wait_policy\n"
        "set_wait_policy()\n"
        "torch_loaded = 'torch' in sys.modules\n"
        "import torch\n"
        "from ingest.threads import wait_policy_active\n"
        "child = subprocess.run([sys.executable, '-c', 'import os; print(os.environ.get(\"OMP_WAIT_POLICY\"))'],"
        " capture_output=True, text=True).stdout.strip()\n"
        "print(json.dumps({'env': os.environ.get('OMP_WAIT_POLICY'), 'torch_first': torch_loaded,"
        " 'active': wait_policy_active(), 'child': child}))"
    )
    assert got == {"env": "PASSIVE", "torch_first": False, "active": True, "child": "PASSIVE"}
    cli = _child(
        "import json, os, sys\nimport circuits.cli.main\n"
        "print(json.dumps({'env': os.environ.get('OMP_WAIT_POLICY'), 'torch': 'torch' in sys.modules}))"
    )
    assert cli == {"env": "PASSIVE", "torch": False}


def test_ingest_sets_threads_only_when_asked(monkeypatch, tmp_path):
    torch = pytest.importorskip("torch")
    from catalog.engine import open_catalog
    from ingest.image_sets import resolve_images
    from ingest.pipeline import IngestConfig, ingest_concept

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU())
    cat = open_catalog(tmp_path / "c.duckdb", create=True)
    images = resolve_images(dataset="catfish:stripes", n=2, seed=0)
    ingest_concept(cat, IngestConfig(model=model, concept="stripes", layers=("1", "3"), k=2), images)
    assert calls == []  # the process's thread count is the caller's
    n = torch.get_num_threads()
    ingest_concept(cat, IngestConfig(model=model, concept="stripes", layers=("1", "3"), k=2, threads=n + 1), images)
    assert calls == [n + 1]
    cat.close()


def test_torch_imported_first_is_detected_and_a_user_policy_is_kept():
    late = _child(
        "import json, torch\nfrom ingest.threads import set_wait_policy, wait_policy_active\nset_wait_policy()\n"
        "print(json.dumps({'active': wait_policy_active()}))"
    )
    assert late == {"active": False}  # OpenMP already started: configure() warns when it uses > 1 thread
    own = _child(
        "import json, os, torch\nfrom ingest.threads import set_wait_policy, wait_policy_active\nset_wait_policy()\n"
        "print(json.dumps({'active': wait_policy_active(), 'env': os.environ['OMP_WAIT_POLICY']}))",
        {"OMP_WAIT_POLICY": "ACTIVE"},
    )
    assert own == {"active": True, "env": "ACTIVE"}
