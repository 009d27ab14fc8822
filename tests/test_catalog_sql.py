"""The read-side SQL helpers: the fast `run_sql` path against `run_query`, its safety, its imports,
`decode_json`, and the vocabulary-derived CHECK constraints."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
from _helpers_catalog import write_run

from catalog import revision, store
from catalog.engine import close_catalogs_of, open_catalog
from catalog.errors import NotFound, QueryError, ReadOnlyViolation, SchemaOutdated
from catalog.sql import decode_json, run_query, run_sql

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def _filled_template(tmp_path_factory, _catalog_template):
    """A catalog with one model, concept and run, written once per module."""
    path = tmp_path_factory.mktemp("filled") / "filled.duckdb"
    shutil.copyfile(_catalog_template, path)
    cat = open_catalog(path)
    with cat.session() as s, s.begin():
        model = store.ensure_model(
            s, name="toy", architecture="cnn", weights_sha256="a" * 64, layers=[("l0", 2), ("l1", 3)]
        )
        concept = store.ensure_concept(s, "star")
        write_run(s, model, concept, [np.arange(6, dtype=np.float32).reshape(2, 3)], params={"a": 1}, n_images=1)
    close_catalogs_of(path)
    return path


@pytest.fixture
def filled(_filled_template, catalog_path):
    """The fresh catalog (a copy of the filled template)."""
    shutil.copyfile(_filled_template, catalog_path)
    return catalog_path


QUERIES = [
    "select * from run",
    "select name, layer_order from model",
    "select src_channel, dst_channel, score from edges_v order by 1, 2",
    "select 1 as a; select 2 as b, 'x' as c",
    "select * from range(50) order by 1 desc",
]


@pytest.mark.parametrize("query", QUERIES)
def test_run_sql_returns_what_run_query_returns(filled, query):
    fast = run_sql(str(filled), query, max_rows=7)
    cat = open_catalog(filled, read_only=True)
    reference = run_query(cat, query, max_rows=7)
    cat.close()
    assert fast == reference
    assert fast.columns and fast.rows


def test_run_sql_truncates_and_keeps_order(filled):
    result = run_sql(str(filled), "select range as n from range(10) order by n desc", max_rows=3)
    assert result.rows == [(9,), (8,), (7,)] and result.truncated
    everything = run_sql(str(filled), "select range as n from range(10)", max_rows=None)
    assert len(everything.rows) == 10 and not everything.truncated


@pytest.mark.parametrize(
    "statement",
    [
        "delete from run",
        "insert into concept (id, name) values (99, 'x')",
        "drop table edge",
        "create table t (a integer)",
        "attach '{dir}/other.duckdb' as other",
        "copy run to '{dir}/out.csv'",
        "export database '{dir}/dump'",
        "select * from read_csv('/etc/passwd')",
        "set enable_external_access = true",
        "commit; delete from run",
        "begin; delete from run",
        "select * from run; delete from edge",
    ],
)
def test_run_sql_refuses_changes(filled, statement):
    before = hashlib.sha256(filled.read_bytes()).hexdigest()
    with pytest.raises(ReadOnlyViolation):
        run_sql(str(filled), statement.format(dir=filled.parent))
    assert hashlib.sha256(filled.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in filled.parent.iterdir()) == ["catalog.duckdb"]


def test_run_sql_errors(filled, tmp_path, monkeypatch):
    with pytest.raises(QueryError, match="syntax error"):
        run_sql(str(filled), "selec 1")
    with pytest.raises(QueryError, match="empty"):
        run_sql(str(filled), "  ")
    with pytest.raises(NotFound, match="circuits db init"):
        run_sql(str(tmp_path / "none.duckdb"), "select 1")
    monkeypatch.setattr(revision, "SCHEMA_HEAD", f"{int(revision.SCHEMA_HEAD) + 1:04d}")  # a newer program
    with pytest.raises(SchemaOutdated) as fast:
        run_sql(f"duckdb:///{filled}", "select 1")
    with pytest.raises(SchemaOutdated) as general:
        open_catalog(filled, read_only=True)
    assert str(fast.value) == str(general.value) and "circuits db upgrade" in str(fast.value)


def test_run_sql_on_a_catalog_open_in_this_process(filled):
    writer = open_catalog(filled)
    with pytest.raises(ReadOnlyViolation):
        run_sql(str(filled), "delete from run")
    assert run_sql(str(filled), "select count(*) from edge").rows == [(5,)]  # the 0 score is no top edge
    with writer.session() as s:
        assert len(store.list_runs(s)) == 1


def test_run_sql_on_an_empty_database(tmp_path):
    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(NotFound, match="no catalog in it"):
        run_sql(str(path), "select 1")


def test_run_sql_imports_neither_sqlalchemy_nor_pyarrow(filled):
    code = (
        "import sys, json; from catalog.sql import run_sql; "
        f"r = run_sql({str(filled)!r}, 'select count(*) from edge'); "
        "print(json.dumps([r.rows[0][0], sorted(m for m in ('sqlalchemy', 'pyarrow', 'alembic', 'duckdb_engine') "
        "if m in sys.modules)]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout) == [5, []]


def test_decode_json():
    assert decode_json('["a", "b"]') == ["a", "b"]
    assert decode_json({"x": [1]}) == {"x": [1]}
    assert decode_json([1, 2]) == [1, 2]
    assert decode_json(None) is None


def test_check_constraints_come_from_the_vocabulary_unchanged():
    """The CHECK SQL is built from the enums and equals what migration 0001 created (no new revision)."""
    from catalog.models import Intervention, Run
    from catalog.vocab import InterventionKind, RunStatus, check_in

    status = "status IN ('running', 'complete', 'failed')"
    kind = "kind IN ('circuit', 'edge')"
    assert check_in("status", RunStatus) == status and check_in("kind", InterventionKind) == kind
    checks = {
        str(c.sqltext)
        for t in (Run.__table__, Intervention.__table__)
        for c in t.constraints
        if c.__class__.__name__ == "CheckConstraint"
    }
    assert checks == {status, kind}
    migration = (ROOT / "migrations" / "versions" / "0001_initial.py").read_text()
    assert f'CheckConstraint("{status}"' in migration and f'CheckConstraint("{kind}"' in migration


def test_prune_plan_metrics_and_statuses_come_from_the_vocabulary():
    from catalog.mask_file import KINDS
    from catalog.models import INTERVENTION_KINDS, RUN_STATUSES
    from catalog.vocab import InterventionKind, MaskKind, Metric, RunStatus
    from queries.prune_plan import AGAINST_METRICS, KEEP_METRICS

    assert AGAINST_METRICS[0] is Metric.attack_success  # an attack's success ranks first
    assert set(AGAINST_METRICS) | set(KEEP_METRICS) <= set(Metric)
    assert RUN_STATUSES == tuple(RunStatus) == ("running", "complete", "failed")
    assert INTERVENTION_KINDS == tuple(InterventionKind) == KINDS == tuple(MaskKind) == ("circuit", "edge")
