"""User-facing errors.

Every error a user can cause (a wrong path, an outdated database, a bad query) is a subclass of
`CircuitsError`. The root CLI turns these into one line on stderr and exit code 1; anything else
is a bug and keeps its traceback. Messages name the problem and the next step.

Messages name the parameter to change as `` `images=` `` (never a command-line flag): a script
reads `error.parameters`; the command line prints each as its flag (`--images`).
"""

from __future__ import annotations

import re

# How library text (errors, warnings, notes) names a parameter: `images=`, `batch_size=`.
PARAMETER_MENTION = re.compile(r"`([a-z][a-z0-9_]*)=`")


class CircuitsError(Exception):
    """An error caused by input or environment, reported to the user without a traceback."""

    @property
    def parameters(self) -> tuple[str, ...]:
        """The parameters the message names (`` `images=` `` → "images"), in order, each once."""
        return tuple(dict.fromkeys(PARAMETER_MENTION.findall(str(self))))


class CatalogError(CircuitsError):
    """A problem with the catalog database."""


class SchemaOutdated(CatalogError):
    """The database schema is not at the revision this version of the code expects."""


class CatalogLocked(CatalogError):
    """The catalog file is held by another process."""


class ReadOnlyViolation(CatalogError):
    """A statement tried to change a catalog opened read-only."""


class QueryError(CatalogError):
    """The database rejected a SQL statement."""


class NotFound(CatalogError):
    """A named object (run, circuit, model, concept) is not in the catalog."""
