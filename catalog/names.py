"""The rule for concept names, checked before anything is written.

A concept name is what a user types to mean a concept (`circuits show stripes`), so it must be
unambiguous text on one line:

- not empty, and no leading or trailing whitespace (``" stripes"`` and ``"stripes"`` would be two
  concepts that print the same);
- no commas (lists of concepts are comma-separated: `--concepts a,b`);
- no control characters (newlines, tabs, escapes: they break tables, CSV and terminals);
- not all digits (``12`` would collide with circuit id 12 wherever a CIRCUIT argument takes an id
  or a concept name);
- at most 200 characters.
"""

from __future__ import annotations

import unicodedata

from catalog.errors import CircuitsError

__all__ = ["CONCEPT_NAME_RULE", "InvalidName", "check_concept_name"]

MAX_NAME_LENGTH = 200

CONCEPT_NAME_RULE = (
    "a concept name is non-empty text without leading/trailing spaces, commas or control "
    f"characters, not all digits, at most {MAX_NAME_LENGTH} characters"
)


class InvalidName(CircuitsError):
    """A concept name that breaks the naming rule (`catalog.names`)."""


def check_concept_name(name: object) -> str:
    """Return `name` when it is a valid concept name.

    Raises:
        InvalidName: the name breaks the rule; the message says which part and how to fix it.
    """
    if not isinstance(name, str):
        raise InvalidName(f"concept name must be text, not {type(name).__name__}")
    problem = _problem(name)
    if problem is not None:
        raise InvalidName(f"concept name {name!r} {problem}: {CONCEPT_NAME_RULE}")
    return name


def _problem(name: str) -> str | None:
    if not name.strip():
        return "is empty"
    if name != name.strip():
        return "has leading or trailing whitespace"
    if "," in name:
        return "contains a comma"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        return "contains a control character"
    if name.isdigit():
        return "is all digits (it would read as an id)"
    if len(name) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters"
    return None
