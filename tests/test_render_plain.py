"""`render_table`'s own layout for large tables (`text_table`) against rich's, and that a large
matrix never goes through rich (a 500 × 500 overlap matrix took 52–88 s in rich)."""

from __future__ import annotations

import random

import pytest

from circuits.cli import render
from circuits.cli.render import _is_number, format_value, render_table
from circuits.cli.tables import RICH_MAX_CELLS, rich_table, text_table

CASES = [
    [
        {"concept": "cat", "a": 1.5, "bb_long_name": None, "n": 3},
        {"concept": "fish dog", "a": 1e-5, "bb_long_name": "x", "n": 12},
    ],
    [{"x": 1}],
    [{"name": "café", "ok": True, "when": None}, {"name": "naïve ü", "ok": False, "when": "2026-01-01"}],
    [{"k": [5, 5, 5], "params": {"a": 1}, "v": float("nan"), "w": -0.0}],
    [{"": "", "b": ""}, {"": "", "b": ""}],  # empty header and cells
    [{"long header here": 1, "s": "a"}, {"long header here": 22, "s": "bbbbbbbbbbbbbbbbbbbbb"}],
]


def _parts(rows: list[dict]) -> tuple[list[str], list[list[str]], list[bool]]:
    cols = list(rows[0])
    cells = [[format_value(r.get(c)) for c in cols] for r in rows]
    return cols, cells, [all(_is_number(r.get(c)) for r in rows) for c in cols]


@pytest.mark.parametrize("rows", CASES)
def test_text_table_is_richs_layout(rows: list[dict]) -> None:
    cols, cells, right = _parts(rows)
    assert text_table(cols, cells, right) == rich_table(cols, cells, right)


def test_text_table_matches_rich_on_a_random_matrix() -> None:
    rng = random.Random(3)
    names = [f"c{rng.randrange(10 ** rng.randrange(1, 6))}" for _ in range(12)]
    rows = [
        {"concept": a, **{b: rng.choice([rng.random(), 1e-9, 0.0, None, 123456789.0]) for b in names}} for a in names
    ]
    cols, cells, right = _parts(rows)
    assert len(rows) * len(cols) <= RICH_MAX_CELLS  # this one goes through rich in render_table
    assert render_table(rows) == text_table(cols, cells, right)


def test_wide_characters_count_two_cells() -> None:
    out = text_table(["name", "n"], [["猫猫", "1"], ["ab", "22"]], [False, True])
    assert out.splitlines() == ["name    n", "─────────", "猫猫    1", "ab     22"]


def test_large_matrix_skips_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(render, "rich_table", lambda *a: calls.append(a) or "")
    n = 500
    rng = random.Random(0)
    names = [f"concept_{i:03d}" for i in range(n)]
    rows = [{"concept": a, **{b: rng.random() for b in names}} for a in names]
    out = render_table(rows)
    assert calls == []
    lines = out.splitlines()
    assert len(lines) == n + 2 and set(lines[1]) == {"─"}
    assert lines[0].split() == ["concept", *names]
    row = lines[2 + 7].split()
    assert row[0] == names[7] and row[1:] == [format_value(rows[7][b]) for b in names]
    assert len({len(line) for line in lines[2:]}) == 1  # every row as wide: columns aligned


def test_small_tables_still_go_through_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = render.rich_table
    monkeypatch.setattr(render, "rich_table", lambda *a: calls.append(a) or real(*a))
    render_table(CASES[0])
    assert len(calls) == 1
