"""`circuits sql` for every `--db` form in the one sandbox, and its result cap in bytes: URL
options cannot loosen DuckDB's settings; a result past `--max-bytes` stops reading and exits 1
with one line, on DuckDB and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from circuits.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def cat_file(tmp_path_factory):
    from catalog.admin import init_catalog
    from catalog.engine import close_catalogs_of

    path = tmp_path_factory.mktemp("sqlb") / "b.duckdb"
    init_catalog(str(path))
    close_catalogs_of(str(path))
    return path


def _one_error(r) -> str:
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize("form", ["path", "url", "url-threads"])
def test_every_db_form_is_sandboxed(cat_file, form):
    db = {"path": str(cat_file), "url": f"duckdb:///{cat_file}", "url-threads": f"duckdb:///{cat_file}?threads=2"}[form]
    assert "locked" in _one_error(runner.invoke(app, ["sql", "set memory_limit='50GB'", "--db", db]))
    r = runner.invoke(app, ["sql", "select current_setting('memory_limit') as m", "--db", db, "-f", "csv"])
    assert r.exit_code == 0, r.output
    number, unit = r.stdout.splitlines()[1].split()
    assert unit == "MiB" or (unit == "GiB" and float(number) <= 4), r.stdout  # the sandbox's cap, not 80 %
    r = runner.invoke(app, ["sql", "select current_setting('temp_directory') as t", "--db", db, "-f", "json"])
    assert r.exit_code == 0 and '"t": ""' in r.stdout, r.output  # no spill directory


def test_url_options_cannot_loosen_the_sandbox(cat_file):
    for option in ("memory_limit=50GB", "lock_configuration=false", "temp_directory=/tmp", "enable_external_access=1"):
        line = _one_error(runner.invoke(app, ["sql", "select 1", "--db", f"duckdb:///{cat_file}?{option}"]))
        assert option.split("=")[0] in line


def test_result_past_max_bytes_stops_with_one_line(cat_file):
    query = "select repeat('x', 100000) as s from range(1000)"
    line = _one_error(runner.invoke(app, ["sql", query, "--db", str(cat_file), "--max-bytes", "1MB"]))
    assert "larger than 1 MB" in line and "--max-bytes" in line
    r = runner.invoke(app, ["sql", query + " limit 5", "--db", str(cat_file), "--max-bytes", "1MB", "-f", "csv"])
    assert r.exit_code == 0 and r.stdout.count("x" * 100000) == 5
    assert "not a size" in _one_error(
        runner.invoke(app, ["sql", "select 1", "--db", str(cat_file), "--max-bytes", "lots"])
    )


@pytest.mark.slow
def test_huge_strings_are_bounded_in_a_fresh_process(cat_file):
    """A query that, unbounded, ran 37 s at 12.1 GB RSS and printed 2 GB (exit 0)."""
    code = (
        "import resource, sys; from circuits.cli.main import main; sys.argv = ['circuits', 'sql', "
        f"\"select repeat('x',100000000) as s from range(30)\", '--timeout', '5', '--db', {str(cat_file)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("error: ")
    rss_kb = int(r.stderr.split("RSS ")[1])
    assert rss_kb < 6_000_000


@pytest.mark.pg
def test_pg_result_past_max_bytes_stops_reading(pg_url):
    import psycopg
    from sqlalchemy.engine import make_url

    db = pg_url
    # 2 GB if it were all fetched (the old client read the whole result before the row cap)
    query = "select repeat('x', 100000) as s from generate_series(1, 20000)"
    args = ["sql", query, "--db", db, "--allow-superuser", "--max-bytes", "2MB"]
    line = _one_error(runner.invoke(app, args))
    assert "larger than 2 MB" in line
    r = runner.invoke(app, ["sql", "select 1 as lonely where false", "--db", db, "--allow-superuser"])
    assert r.exit_code == 0 and "lonely" in r.stdout and "(no rows)" in r.stdout, r.output  # columns kept
    r = runner.invoke(app, ["sql", "set work_mem = '8MB'", "--db", db, "--allow-superuser"])
    assert r.exit_code == 0, r.output  # a statement without rows
    r = runner.invoke(app, ["sql", "select 1 as a; select 2 as b", "--db", db, "--allow-superuser"])
    assert r.exit_code == 1  # one statement per query on PostgreSQL (no way out of the read-only transaction)
    r = runner.invoke(app, ["sql", "select count(pg_advisory_lock(7)) as n", "--db", db, "--allow-superuser"])
    assert r.exit_code == 0, r.output
    with psycopg.connect(make_url(db).set(drivername="postgresql").render_as_string(hide_password=False)) as c:
        assert c.execute("select count(*) from pg_locks where locktype = 'advisory'").fetchone()[0] == 0


def test_sizes_and_caps():
    from catalog.errors import QueryError
    from catalog.sql_limits import address_space_cap, parse_size

    assert parse_size("100MB") == 100_000_000 and parse_size("2GiB") == 2 << 30 and parse_size("512") == 512
    assert parse_size(" 1.5 gb ") == 1_500_000_000
    for bad in ("lots", "-1MB", "0", "10XB", ""):
        with pytest.raises(QueryError):
            parse_size(bad)
    cap = address_space_cap("1GB", 10_000_000)
    assert 1_000_000_000 + 20_000_000 + (1 << 30) <= cap < 1_000_000_000 + 20_000_000 + (1 << 30) + (96 << 20) * 4096
