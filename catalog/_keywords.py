"""Keyword arguments taken as one typed set (`**options: Unpack[SomeTypedDict]`), checked at run
time as Python checks named parameters: a misspelt or missing keyword is a TypeError."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

__all__ = ["check_keywords"]


def check_keywords(where: str, given: Collection[str], typed: Any) -> None:
    """Raise TypeError when the keywords `given` to `where` (e.g. "list_runs()") are not the
    TypedDict `typed`'s: one it does not declare, or a required one left out."""
    unknown = sorted(set(given) - typed.__required_keys__ - typed.__optional_keys__)
    if unknown:
        raise TypeError(f"{where} got an unexpected keyword argument {unknown[0]!r}")
    missing = sorted(typed.__required_keys__ - set(given))
    if missing:
        raise TypeError(f"{where} missing required keyword argument{'s' * (len(missing) > 1)}: {', '.join(missing)}")
