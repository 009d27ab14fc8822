"""Alembic environment and revisions of the catalog schema (driven from `catalog.migrate`)."""
