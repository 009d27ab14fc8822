"""Short locks that make check-then-write steps safe between processes sharing a catalog.

PostgreSQL: advisory transaction locks (`pg_advisory_xact_lock`), released when the transaction
ends; a second process asking for the same lock waits, and its next statement sees what the first
committed. DuckDB: nothing to do, because a file admits one writing process at a time.
"""

from __future__ import annotations

import enum

from sqlalchemy import text
from sqlalchemy.orm import Session

__all__ = ["Lock", "lock"]


class Lock(enum.IntEnum):
    """What a lock protects (the first half of the advisory lock's key)."""

    model_layers = 1  # adding layers to a model
    example_images = 2  # recording a concept's image sets
    run_circuits = 3  # adding a circuit to a run


def lock(session: Session, what: Lock, key: int) -> None:
    """Hold `what` for object `key` (e.g. a model id) until the session's transaction ends.

    Args:
        session: the caller's session, inside the transaction the lock protects.
        what: the kind of step.
        key: the id of the object (a 32-bit integer).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": int(what), "b": int(key)})
