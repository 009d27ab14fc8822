"""Shared CLI vocabulary (`circuits.cli.options`): one reading of comma-separated options."""

from __future__ import annotations

import pytest

from circuits.cli.options import comma_list


@pytest.mark.parametrize(
    "text, items",
    [
        (None, None),
        ("a", ["a"]),
        (" a , b ", ["a", "b"]),
        ("a,,b,", ["a", "b"]),  # empty items dropped, as every command reads them
        (" , ", []),  # given but empty: not the same as not given
    ],
)
def test_comma_list_strips_and_drops_empty_items(text, items):
    assert comma_list(text) == items
