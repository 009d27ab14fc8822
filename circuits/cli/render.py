"""Rendering tabular results as an aligned text table, CSV or JSON (`--format table|csv|json`).

Shared by every command that prints rows. Rows are mappings (column → value); every row has the
same columns. Tables are plain text with no wrapping, so wide matrices stay aligned however
narrow the terminal; CSV and JSON are for programs (dates as ISO text, missing values empty /
null, NaN as null).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from catalog.errors import CircuitsError

__all__ = ["FORMATS", "check_format", "format_value", "render", "render_table", "render_csv", "render_json", "to_json", "plain"]

FORMATS = ("table", "csv", "json")


def check_format(fmt: str) -> str:
    """Return `fmt` if it is one of `FORMATS`.

    Raises:
        CircuitsError: any other value.
    """
    if fmt not in FORMATS:
        raise CircuitsError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def plain(value: Any) -> Any:
    """A JSON-ready version of a value (NaN → None, dates → ISO text, tuples → lists)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat(sep=" ", timespec="seconds") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        return plain(value.item())
    return value


def format_value(value: Any) -> str:
    """How a value reads in a text table: floats to 4 significant decimals, None as empty."""
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4f}"
    if isinstance(value, list) and all(_is_number(v) for v in value):
        return ",".join(format_value(v) for v in value)  # k per layer, channels: 5,5,5
    if isinstance(value, list | dict):
        return json.dumps(value)  # JSON columns read as JSON
    return str(value)


def _is_number(value: Any) -> bool:
    value = plain(value)
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return list(columns)
    return list(rows[0].keys()) if rows else []


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An aligned text table (numbers right-aligned), or "(no rows)".

    Args:
        rows: the rows.
        columns: column order (default: the first row's keys).

    Returns:
        The table, lines joined by newlines, no trailing newline.
    """
    cols = _columns(rows, columns)
    if not rows:
        return "  ".join(cols) + "\n(no rows)" if cols else "(no rows)"
    cells = [[format_value(r.get(c)) for c in cols] for r in rows]
    numeric = [all(_is_number(r.get(c)) for r in rows) for c in cols]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [line(cols), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    return "\n".join(out)


def render_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV with a header row (missing values empty), no trailing newline."""
    cols = _columns(rows, columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for r in rows:
        writer.writerow(["" if (v := plain(r.get(c))) is None else v for c in cols])
    return buf.getvalue().rstrip("\n")


def render_json(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A JSON array of objects (NaN as null, dates as ISO text)."""
    cols = _columns(rows, columns)
    return json.dumps([{c: plain(r.get(c)) for c in cols} for r in rows], indent=2)


def to_json(value: Any) -> str:
    """Any nest of dicts, lists and plain values as indented JSON (NaN as null, dates as text)."""
    return json.dumps(plain(value), indent=2)


def render(rows: Sequence[Mapping[str, Any]], fmt: str = "table", columns: Sequence[str] | None = None) -> str:
    """Render rows in one of `FORMATS`.

    Raises:
        CircuitsError: unknown format.
    """
    renderer = {"table": render_table, "csv": render_csv, "json": render_json}[check_format(fmt)]
    return renderer(rows, columns)
