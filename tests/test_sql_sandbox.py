"""`circuits sql` bounds: a time limit, a memory cap without spill files, several statements,
clean output of BLOB/decimal/UUID values, one-line errors; corruption is not "in use"."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from catalog.db_path import CatalogCorrupt, open_error
from catalog.errors import CatalogLocked, QueryError
from catalog.sql import run_sql
from catalog.sql_limits import SqlTimeout, UnsafeRole, check_postgres_role
from circuits.cli.main import app

runner = CliRunner()
CROSS = "select count(*) from range(100000) a, range(100000) b, range(100000) c"


def test_a_runaway_query_is_stopped_at_the_timeout(catalog_path):
    # The three-way cross join would run for days: being stopped with this error is the check.
    with pytest.raises(SqlTimeout, match="ran longer than 0.5 s"):
        run_sql(catalog_path, CROSS, timeout_s=0.5)


def test_the_timeout_also_holds_in_process(cat):
    from catalog.engine import open_catalog

    ro = open_catalog(cat.url.render_as_string(hide_password=False), read_only=True)
    from catalog.sql import run_query

    with pytest.raises(SqlTimeout):
        run_query(ro, CROSS, timeout_s=0.5)


def test_a_large_sort_fails_in_memory_and_spills_nothing(catalog_path):
    with pytest.raises(QueryError, match="(?i)memory"):
        run_sql(
            catalog_path,
            "select max(rn) from (select row_number() over (order by md5(i::varchar)) rn from range(20000000) t(i))",
            memory_limit="64MB",
            timeout_s=120,
        )
    spill = [p for p in catalog_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert spill == []


def test_several_statements_return_the_last(catalog_path):
    assert run_sql(catalog_path, "select 1; select 2 as two").rows == [(2,)]


def test_blob_decimal_uuid_and_settings_print_as_json(catalog_path):
    r = runner.invoke(
        app,
        [
            "sql",
            "select 'ab'::blob as b, 1.50::decimal(4,2) as d, "
            "'00000000-0000-0000-0000-000000000001'::uuid as u, interval 1 day as iv, "
            "current_setting('threads') as t",
            "--db",
            str(catalog_path),
            "-f",
            "json",
        ],
    )
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)[0]
    assert row["b"] == "\\x6162" and row["d"] == "1.50" and row["u"].endswith("0001") and "day" in row["iv"]
    settings = runner.invoke(app, ["sql", "select * from duckdb_settings()", "--db", str(catalog_path), "-f", "json"])
    assert settings.exit_code == 0 and json.loads(settings.stdout), settings.output


def test_invalid_utf8_is_one_line(catalog_path):
    r = runner.invoke(app, ["sql", "select '\udcff'", "--db", str(catalog_path)])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "not valid UTF-8" in r.stderr


@pytest.mark.parametrize(
    "detail, kind",
    [
        (
            'IO Error: Could not set lock on file "/x/c.duckdb": Conflicting lock is held in python (PID 12)',
            CatalogLocked,
        ),
        (
            "Corrupt database file: computed checksum 1 does not match stored checksum 0 in block at location 0",
            CatalogCorrupt,
        ),
        ('IO Error: The file "/x/c.duckdb" exists, but it is not a valid DuckDB database file!', CatalogCorrupt),
    ],
)
def test_open_errors_are_sorted_by_meaning(detail, kind):
    err = open_error(detail, "/x/c.duckdb")
    assert type(err) is kind
    if kind is CatalogCorrupt:
        assert "in use" not in str(err) and "backup" in str(err)


class _Cursor:
    def __init__(self, row):
        self.row = row

    def execute(self, sql, params=None):
        assert "rolsuper" in sql and "pg_execute_server_program" in sql

    def fetchone(self):
        return self.row


@pytest.mark.parametrize(
    "row, refused",
    [
        (("postgres", True, False, False, False), "superuser"),
        (("etl", False, True, False, False), "pg_read_server_files"),
        (("etl", False, False, False, True), "pg_execute_server_program"),
        (("reader", False, False, False, False), None),
    ],
)
def test_postgres_roles_that_reach_the_server_are_refused(row, refused):
    if refused is None:
        check_postgres_role(_Cursor(row))
        return
    with pytest.raises(UnsafeRole, match=refused) as info:
        check_postgres_role(_Cursor(row))
    assert "CREATE ROLE" in str(info.value)
