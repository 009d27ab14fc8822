"""How `circuits.cli.render.render_table` lays out a text table: by `rich` for small tables, by
`text_table` (the same layout, written directly) above `RICH_MAX_CELLS` cells.

Cells arrive already formatted (`circuits.cli.render.format_value`) and made safe for the terminal.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

__all__ = ["RICH_MAX_CELLS", "rich_table", "text_table"]

# Above this many cells a table is laid out here as fixed-width text instead of by `rich`, whose
# layout grows faster than the cell count (a 500 × 500 overlap matrix: 52–88 s and 300 MB as a
# command, ~1 s here; docs/results.md, "Catalog at 10,000 runs: large tables and storage per run").
# Below it rich draws the table; both give the same text (tests/test_render_plain.py compares them).
RICH_MAX_CELLS = 2_000


def rich_table(cols: Sequence[str], cells: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """`render_table`'s layout drawn by `rich` (the reference `text_table` is tested against)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="", highlight=False)
    for c, r in zip(cols, right):
        table.add_column(c, justify="right" if r else "left", no_wrap=True)
    for row in cells:
        table.add_row(*row)  # the console has markup and emoji off: cell text prints as it is
    # Wide enough that nothing wraps, whatever the terminal: matrices stay aligned when piped.
    width = sum(max(len(c), *(len(row[i]) for row in cells)) + 3 for i, c in enumerate(cols)) + 4
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False, markup=False, emoji=False).print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip("\n").splitlines())


def text_table(header: Sequence[str], cells: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """The layout `rich` draws for `render_table`, written directly: columns as wide as their
    widest cell (terminal cells: wide characters count 2), three spaces apart, a rule of "─" under
    the header, trailing spaces stripped.

    Args:
        header: the column names, as printed.
        cells: one list of printed cell texts per row, one text per column.
        right: per column, whether it is right-aligned (numbers) rather than left-aligned.

    Returns:
        The table, lines joined by newlines, no trailing newline.
    """
    from rich.cells import cell_len

    def width(text: str) -> int:
        return len(text) if text.isascii() else cell_len(text)

    widths = [width(h) for h in header]
    for row in cells:
        widths = [max(w, width(t)) for w, t in zip(widths, row)]

    def line(texts: Sequence[str]) -> str:
        parts = []
        for text, w, r in zip(texts, widths, right):
            pad = " " * (w - width(text))
            parts.append(pad + text if r else text + pad)
        return "   ".join(parts).rstrip()

    rule = "─" * (sum(widths) + 3 * (len(widths) - 1))
    return "\n".join([line(header), rule, *(line(row) for row in cells)])
