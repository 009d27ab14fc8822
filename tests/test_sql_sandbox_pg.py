"""`circuits sql` on a real PostgreSQL server: refused as a superuser (which could run programs
with COPY … PROGRAM and read files with pg_read_file), allowed and bounded as a read-only role.

Needs a server: `eval $(bash .ci/postgres.sh)` sets CIRCUITS_TEST_PG_URL (a superuser URL).
"""

from __future__ import annotations

from pathlib import Path

import backends
import pytest
from typer.testing import CliRunner

from circuits.cli.main import app

pytestmark = pytest.mark.pg
runner = CliRunner()


@pytest.fixture(scope="module")
def pg(pg_server):
    """A catalog database made by `circuits db init`, with a read-only role beside the superuser."""
    from catalog.engine import close_all

    url = backends.create_database(pg_server, prefix="h10_")
    db_url = backends.url_text(url)
    r = runner.invoke(app, ["db", "init", "--db", db_url])
    assert r.exit_code == 0, r.output
    with backends.read_only_role(db_url) as reader:
        yield {"admin": db_url, "reader": reader}
        close_all()
    backends.drop_database(pg_server, url.database)


def test_superuser_is_refused_before_any_statement(pg, tmp_path, monkeypatch):
    monkeypatch.delenv("CIRCUITS_SQL_ALLOW_SUPERUSER", raising=False)
    marker = tmp_path / "ran"
    r = runner.invoke(app, ["sql", f"copy (select 1) to program 'touch {marker}'", "--db", pg["admin"]])
    assert r.exit_code == 1 and r.stderr.startswith("error: ") and "superuser" in r.stderr, r.output
    assert "CREATE ROLE" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not marker.exists()
    r = runner.invoke(app, ["sql", "select pg_read_file('/etc/hostname')", "--db", pg["admin"]])
    assert r.exit_code == 1 and "superuser" in r.stderr
    r = runner.invoke(app, ["sql", "select 1 as one", "--db", pg["admin"], "--allow-superuser", "-f", "json"])
    assert r.exit_code == 0 and '"one": 1' in r.stdout, r.output  # the documented, explicit way out


def test_a_read_only_role_reads_and_is_bounded(pg, tmp_path):
    r = runner.invoke(app, ["sql", "select count(*) as n from run", "--db", pg["reader"], "-f", "json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["sql", "select pg_read_file('/etc/hostname')", "--db", pg["reader"]])
    assert r.exit_code == 1 and r.stderr.startswith("error: "), r.output
    r = runner.invoke(app, ["sql", "select pg_sleep(5)", "--timeout", "0.5", "--db", pg["reader"]])
    assert r.exit_code == 1 and "ran longer than 0.5 s" in r.stderr, r.output
    marker = Path(tmp_path / "ran")
    r = runner.invoke(app, ["sql", f"copy (select 1) to program 'touch {marker}'", "--db", pg["reader"]])
    assert r.exit_code == 1 and not marker.exists()
