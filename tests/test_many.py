"""`circuits ingest-many` and `ingest.fanout.many`: job files, the job runner on an in-process executor
(both backends), skipping what is stored, retries and reports; a local Ray cluster (slow)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from catalog.engine import close_catalogs_of, open_catalog
from catalog.sql import run_query
from circuits.cli.main import app
from ingest.fanout.executors import InlineExecutor
from ingest.fanout.jobs import Job, JobFileError, load_jobs
from ingest.fanout.many import ingest_many

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore::ingest.zoo.specs.RandomInitWarning")

TINY = '''
import torch
import torch.nn as nn

def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU())


class Broken(nn.Module):
    """A sound model whose attribution the tests make fail (`injected_failure`): a failure in the
    tool's computation, which a retry may cure (an exception in the model's own code is bad input)."""

    def __init__(self):
        super().__init__()
        self.net = build()

    def forward(self, x):
        return self.net(x)


def broken():
    return Broken()
'''


@pytest.fixture
def injected_failure(monkeypatch):
    """CLA of the `broken` model (layers net.*) raises RuntimeError("injected failure")."""
    import ingest.cla.attribution as attribution

    real = attribution.attribute

    def attribute(model, layers, *args, **kwargs):
        if layers[0].startswith("net."):
            raise RuntimeError("injected failure")
        return real(model, layers, *args, **kwargs)

    monkeypatch.setattr(attribution, "attribute", attribute)


def _job_file(tmp_path, jobs):
    import yaml

    (tmp_path / "tiny.py").write_text(TINY)
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(jobs))
    return path


def _jobs(model="tiny.py:build", layers="0,2"):
    base = {"model": model, "dataset": "catfish:stripes", "n": 3, "layers": layers}
    return [
        {**base, "concept": "stripes", "k": 2},
        {**base, "concept": "stripes", "k": 3},  # same run, another circuit
        {**base, "concept": "stripes", "k": 2},  # a repeat: skipped or reused
        {**base, "concept": "star", "dataset": "catfish:star", "k": [1, 2]},
    ]


def test_job_file_fields_paths_and_errors(tmp_path):
    path = _job_file(
        tmp_path,
        [{"model": "tiny.py:build", "concept": "c", "images": "imgs", "k": "2,3", "layers": "0, 2", "weights": "w.pt"}],
    )
    [job] = load_jobs(path)
    assert job == Job(
        model=f"{tmp_path}/tiny.py:build",
        concept="c",
        k=(2, 3),
        images=f"{tmp_path}/imgs",
        layers=("0", "2"),
        weights=f"{tmp_path}/w.pt",
    )
    assert job.label == "tiny.py:build × c × k=2,3"
    assert load_jobs(_job_file(tmp_path, {"jobs": [{"model": "m", "concept": "c", "dataset": "catfish:x"}]}))[0].k == 5
    for jobs, message in (
        ([{"model": "m", "concept": "c", "dataset": "d", "kk": 1}], "unknown field\\(s\\) kk"),
        ([{"model": "m", "dataset": "d"}], "job 1 lacks concept"),
        ([{"model": "m", "concept": "c"}], "exactly one of images"),
        (
            [{"model": "m", "concept": "c", "dataset": "d", "k": "x"}],
            "job 1: k takes a positive integer or one per layer",
        ),
        ([], "holds no jobs"),
        (["m"], "not a mapping"),
    ):
        with pytest.raises(JobFileError, match=message):
            load_jobs(_job_file(tmp_path, jobs))
    (tmp_path / "bad.yaml").write_text("- {model: [")
    with pytest.raises(JobFileError, match="not valid YAML at line"):
        load_jobs(tmp_path / "bad.yaml")


def _counts(db):
    close_catalogs_of(db)
    cat = open_catalog(db, read_only=True)
    try:
        result = run_query(
            cat,
            "SELECT (SELECT count(*) FROM run WHERE status = 'complete'), "
            "(SELECT count(*) FROM run WHERE status = 'failed'), "
            "(SELECT count(*) FROM circuit), (SELECT count(*) FROM edge)",
        )
    finally:
        cat.close()
    return tuple(result.rows[0])


def test_runner_stores_each_run_once_retries_failures_and_skips_on_rerun(tmp_path, db_url, backend, injected_failure):
    jobs = load_jobs(_job_file(tmp_path, [*_jobs(), {**_jobs("tiny.py:broken", "net.0,net.2")[0], "concept": "bad"}]))
    seen = []
    report = ingest_many(
        db_url,
        jobs,
        InlineExecutor(),
        retries=1,
        progress=lambda done, total, o: seen.append((done, total, o and o.status)),
    )
    assert report.writer == ("workers" if backend == "postgresql" else "driver")
    assert [o.status for o in report.outcomes] == ["stored", "reused", "skipped", "stored", "failed"]
    runs = {o.run_id for o in report.outcomes[:3]}
    assert len(runs) == 1 and report.outcomes[3].run_id not in runs
    assert (
        len({o.circuit_id for o in report.outcomes[:4]}) == 3
        and report.outcomes[2].circuit_id == report.outcomes[0].circuit_id
    )
    bad = report.failed[0]
    assert bad.attempts == 2 and "injected failure" in bad.error
    assert seen[0] == (0, 5, None) and seen[-1][:2] == (5, 5) and len(seen) == 6
    # 2 complete runs (4·5 edges each), one failed row for the failed job (not one per try), 3 circuits
    assert _counts(db_url) == (2, 1, 3, 2 * 20)

    again = ingest_many(db_url, jobs[:4], InlineExecutor())
    assert [o.status for o in again.outcomes] == ["skipped"] * 4
    assert [(o.run_id, o.circuit_id) for o in again.outcomes] == [(o.run_id, o.circuit_id) for o in report.outcomes[:4]]
    assert _counts(db_url) == (2, 1, 3, 40)


def test_deterministic_failures_are_not_retried_and_leave_one_row(tmp_path, catalog_path, monkeypatch):
    """Unbounded retries once stored a `failed` row per try (3 invocations → 9 rows)."""
    import ingest.cla.search
    from catalog.errors import CircuitsError

    calls = []

    def deterministic(*args, **kwargs):
        calls.append(1)
        raise CircuitsError("a deterministic failure")

    monkeypatch.setattr(ingest.cla.search, "find_circuit", deterministic)  # inside compute: a failed run row
    jobs = load_jobs(_job_file(tmp_path, [{**_jobs()[0], "concept": "det"}]))
    for invocation in (1, 2):
        report = ingest_many(str(catalog_path), jobs, InlineExecutor(), retries=3)
        [outcome] = report.outcomes
        assert outcome.status == "failed" and outcome.attempts == 1 and "deterministic" in outcome.error, outcome
        assert _counts(str(catalog_path))[1] == invocation  # one `failed` row per invocation
    assert len(calls) == 2


def test_bad_input_is_reported_once_not_retried(tmp_path, catalog_path):
    jobs = load_jobs(_job_file(tmp_path, [{"model": "no-such-model", "concept": "c", "dataset": "catfish:stripes"}]))
    report = ingest_many(str(catalog_path), jobs, InlineExecutor(), retries=3)
    [outcome] = report.outcomes
    assert outcome.status == "failed" and outcome.attempts == 1 and "no-such-model" in outcome.error


def test_cli_reports_jobs_and_exits_1_on_failure(tmp_path, injected_failure):
    path = _job_file(tmp_path, [_jobs()[0], {**_jobs("tiny.py:broken", "net.0,net.2")[0], "concept": "bad"}])
    db = str(tmp_path / "c.duckdb")
    result = runner.invoke(app, ["ingest-many", str(path), "--workers", "0", "--retries", "0", "--db", db])
    assert result.exit_code == 1, result.output
    assert "this process wrote every run (a DuckDB catalog takes one writer)" in result.stdout
    assert "stored   tiny.py:build × stripes × k=2" in result.stdout and "1 failed, 1 stored" in result.stdout
    assert "error: job tiny.py:broken × bad × k=2 failed after 1 tries: RuntimeError: injected failure" in result.stderr
    again = runner.invoke(app, ["ingest-many", str(path), "--workers", "0", "--retries", "0", "--db", db])
    assert "skipped  tiny.py:build × stripes × k=2" in again.stdout
    close_catalogs_of(db)


@pytest.mark.slow
def test_ray_local_cluster_fans_out_and_stores_each_run_once(tmp_path, db_url, backend):
    pytest.importorskip("ray")
    path = _job_file(tmp_path, _jobs())
    result = runner.invoke(app, ["ingest-many", str(path), "--workers", "2", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "a local Ray cluster: 2 workers" in result.stdout
    if backend == "duckdb":
        assert (
            "this process wrote every run (a DuckDB catalog takes one writer; the workers computed in parallel)"
            in result.stdout
        )
    else:
        assert "each worker wrote its runs to the shared catalog" in result.stdout
    # the two k=2 stripes jobs may run at once: one stores, the other reuses (or skips)
    assert _counts(db_url) == (2, 0, 3, 40)
    again = runner.invoke(app, ["ingest-many", str(path), "--workers", "2", "--db", db_url])
    assert again.exit_code == 0 and "4 skipped" in again.stdout, again.output
    rows = json.loads(
        runner.invoke(app, ["sql", "select count(*) as n from run_key", "--db", db_url, "-f", "json"]).stdout
    )
    assert rows == [{"n": 2}]


@pytest.mark.gpu
@pytest.mark.slow
def test_ray_gives_a_gpu_to_cuda_jobs_only_and_runs_record_it(tmp_path):
    pytest.importorskip("ray")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from ingest.fanout.executors import RayExecutor

    first = _jobs()[0]
    jobs = load_jobs(
        _job_file(tmp_path, [{**first, "device": "cuda"}, {**first, "concept": "star", "dataset": "catfish:star"}])
    )
    db = str(tmp_path / "c.duckdb")
    executor = RayExecutor(1)
    try:
        assert executor.gpus >= 1 and "GPUs for jobs on a cuda device" in executor.description
        report = ingest_many(db, jobs, executor)
    finally:
        executor.shutdown()
    assert [o.status for o in report.outcomes] == ["stored", "stored"]
    rows = json.loads(
        runner.invoke(app, ["sql", "select device from run order by id", "--db", db, "-f", "json"]).stdout
    )
    # the auto job got no GPU from Ray, so it saw none and ran on the CPU
    assert rows[0]["device"].startswith("cuda") and rows[1]["device"] == "cpu"


def test_same_images_under_two_concepts_records_both(tmp_path, db_url):
    """The zebra case: the same images as `stripes` and as `zebra` are one computation, but both
    concepts are recorded (`circuits show zebra` works), as two `circuits ingest` calls do."""
    base = {"model": "tiny.py:build", "dataset": "catfish:stripes", "n": 3, "layers": "0,2", "k": 2}
    jobs = load_jobs(_job_file(tmp_path, [{**base, "concept": "stripes"}, {**base, "concept": "zebra"}]))
    report = ingest_many(db_url, jobs, InlineExecutor())
    assert [o.status for o in report.outcomes] == ["stored", "reused"], report.outcomes
    stripes, zebra = report.outcomes
    assert zebra.run_id != stripes.run_id and zebra.circuit_id != stripes.circuit_id
    shown = runner.invoke(app, ["show", "zebra", "--db", db_url])
    assert shown.exit_code == 0, shown.output
    assert f"circuit {zebra.circuit_id}" in shown.stdout or str(zebra.circuit_id) in shown.stdout
    again = ingest_many(db_url, jobs, InlineExecutor())
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]
    assert [(o.run_id, o.circuit_id) for o in again.outcomes] == [(o.run_id, o.circuit_id) for o in report.outcomes]
    close_catalogs_of(db_url)
