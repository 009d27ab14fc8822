"""Alembic environment for the catalog (run by `catalog.migrate.upgrade`, not by an .ini file).

`catalog.migrate.alembic_config` passes an open connection in `config.attributes`; the
migration runs in that connection's transaction. DuckDB needs an Alembic implementation class,
which duckdb-engine does not ship: `DuckDBImpl` below registers one (docs/architecture.md, "Conventions").
"""

from __future__ import annotations

from alembic import context
from alembic.ddl.impl import DefaultImpl
from sqlalchemy import create_engine, pool

from catalog.models import Base


class DuckDBImpl(DefaultImpl):
    """Alembic's DDL implementation for DuckDB: the generic one, with transactional DDL."""

    __dialect__ = "duckdb"
    transactional_ddl = True


target_metadata = Base.metadata


def run_migrations_offline() -> None:
    """Emit the migration as SQL text (`alembic upgrade --sql`), without a database."""
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run on the connection handed over by `catalog.migrate`, or on `sqlalchemy.url`."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("run migrations with catalog.migrate.upgrade() or `circuits db upgrade`")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
