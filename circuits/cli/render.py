"""Everything the commands print: rows as an aligned text table, CSV or JSON (`--format
table|csv|json`), a circuit's details (`circuits show`), and the progress bar of long commands.

Shared by every command that prints rows. Rows are mappings (column → value); every row has the
same columns. Tables are plain text with no wrapping (drawn by `rich`, or above `RICH_MAX_CELLS`
cells in the same layout by `circuits.cli.tables.text_table`), so wide matrices stay aligned
however narrow the terminal; CSV and JSON are for programs (dates as ISO text, missing values
empty / null, NaN as null).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from catalog.errors import PARAMETER_MENTION, CircuitsError
from circuits.cli.tables import RICH_MAX_CELLS, rich_table, text_table

if TYPE_CHECKING:
    from rich.progress import TaskID

    from queries.listing import CircuitDetails

__all__ = [
    "FORMATS",
    "check_format",
    "cli_message",
    "details_dict",
    "details_neuron_rows",
    "details_text",
    "format_value",
    "plain",
    "progress_bar",
    "render",
    "render_csv",
    "render_json",
    "render_table",
    "safe_text",
    "to_json",
]

FORMATS = ("table", "csv", "json")

# Terminal control characters (C0, DEL, C1) and the invisible ones that reorder or hide text
# (bidi overrides, zero-width marks): a catalog is data from someone else, and a model path like
# "x\x1b]0;…\x07" must not retitle, clear or rewrite the user's terminal.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_UNSAFE_KEEP_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch == "\r":
        return "\\r"
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def safe_text(text: str, *, keep_lines: bool = False) -> str:
    """`text` with control and invisible reordering characters written as escapes (`\\x1b`),
    for the terminal; printable text (any script) is unchanged.

    Args:
        keep_lines: leave newlines and tabs (for multi-line text built here).
    """
    return (_UNSAFE_KEEP_LINES if keep_lines else _UNSAFE).sub(_escape, text)


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
    kind = type(value)  # the common exact types first: a large matrix has 250,000 of them
    if kind is float:
        return None if math.isnan(value) else value
    if kind is int or kind is str or value is None:
        return value
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
    if isinstance(value, bytes | bytearray | memoryview):  # BLOBs (`circuits sql`): hex, as SQL writes them
        return "\\x" + bytes(value).hex()
    if value is not None and not isinstance(value, str | int | float | bool):
        return str(value)  # Decimal, UUID, time, timedelta, …: their text form
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
        return json.dumps(value)  # JSON columns read as JSON (control characters escaped by json)
    return safe_text(str(value))


def _is_number(value: Any) -> bool:
    if type(value) is float or type(value) is int or value is None:  # most cells: no conversion
        return True
    value = plain(value)
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return list(columns)
    return list(rows[0].keys()) if rows else []


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An aligned text table (numbers right-aligned, no wrapping), or "(no rows)".

    Small tables are drawn by `rich`; one of more than `RICH_MAX_CELLS` cells by `text_table`,
    which writes the same layout in time linear in the cells.

    Args:
        rows: the rows.
        columns: column order (default: the first row's keys).

    Returns:
        The table, lines joined by newlines, no trailing newline and no colour codes.
    """
    cols = _columns(rows, columns)
    if not rows:
        return "  ".join(cols) + "\n(no rows)" if cols else "(no rows)"
    cells = [[format_value(r.get(c)) for c in cols] for r in rows]
    right = [all(_is_number(r.get(c)) for r in rows) for c in cols]
    if len(rows) * len(cols) > RICH_MAX_CELLS:
        return text_table([safe_text(c) for c in cols], cells, right)
    return rich_table(cols, cells, right)


def render_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV with a header row (missing values empty), no trailing newline."""
    cols = _columns(rows, columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([safe_text(c) for c in cols])
    for r in rows:
        writer.writerow(
            [
                "" if (v := plain(r.get(c))) is None else safe_text(v, keep_lines=True) if isinstance(v, str) else v
                for c in cols
            ]
        )
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


# ---------------------------------------------------------------- `circuits show`


def details_neuron_rows(details: CircuitDetails) -> list[dict[str, object]]:
    """One dict per neuron of a `circuits show` circuit: layer, channel."""
    c = details.circuit
    return [
        {"layer": name, "channel": ch, "label": details.labels.get(name, {}).get(ch)}
        for name, chans in zip(c.layer_names, c.channels)
        for ch in chans
    ]


def details_dict(details: CircuitDetails) -> dict[str, object]:
    """A circuit's details as plain data (channels per layer, interventions with evaluations)."""
    c, r = details.circuit, details.run
    return {
        "circuit": c.id,
        "run": r.id,
        "model": r.model,
        "weights_sha256": r.weights_sha256,
        "weights_source": r.library_versions.get("weights_source"),
        "concept": r.concept,
        "status": r.status,
        "n_images": r.n_images,
        "device": r.device,
        "k": list(c.k),
        "sweeps": c.sweeps,
        "converged": c.converged,
        "objective": c.objective,
        "objective_history": list(c.objective_history),
        "fixed": c.fixed,
        "created_at": c.created_at,
        "layers": [
            {"layer": n, "width": w, "k": len(ch), "channels": list(ch)}
            | ({"labels": [details.labels[n].get(x) for x in ch]} if n in details.labels else {})
            for n, w, ch in zip(c.layer_names, c.widths, c.channels)
        ],
        "interventions": [
            {
                "id": iv.id,
                "kind": iv.kind,
                "params": iv.params,
                "edge_fraction": iv.edge_fraction,
                "baseline_edge_fraction": iv.baseline_edge_fraction,
                "evaluations": [asdict(e) for e in iv.evaluations],
            }
            for iv in details.interventions
        ],
    }


def details_text(details: CircuitDetails, next_step: str | None = None) -> str:
    """A circuit's details as readable multi-line text for the terminal.

    `next_step` is the complete `circuits ablate` command shown when there are no interventions
    yet (`queries.suggest`); without it a generic one is shown.
    """
    c, r = details.circuit, details.run
    lines = [
        f"circuit {c.id}: concept {r.concept} on {r.model} (weights {r.weights_sha256[:12]})",
        f"run {r.id}: {r.status}, {r.n_images} images, {len(r.layer_names)} layers, device {r.device}, "
        f"{format_value(r.seconds)} s",
        f"search: k={','.join(str(x) for x in c.k)}, {c.sweeps} sweeps, "
        f"{'converged' if c.converged else 'NOT converged'}, objective {format_value(c.objective)} "
        f"(initial {format_value(c.objective_history[0]) if c.objective_history else '?'})",
    ]
    from queries.suggest import weights_warning

    warning = weights_warning(r.library_versions)
    if warning:
        lines.insert(1, f"warning: {warning}")
    if c.fixed:
        anchors = [details.neuron_text(k, int(ch)) for k, v in c.fixed.items() for ch in v]
        lines.append(f"anchored (fixed) on {', '.join(anchors)}: not pruned by `circuits ablate` unless --prune-anchor")
    lines += ["", "neurons per layer:"]

    def chan(layer: str, x: int) -> str:
        label = details.labels.get(layer, {}).get(x)
        return f"{x} ({label})" if label else str(x)

    rows = [
        {"layer": n, "width": w, "k": len(ch), "channels": " ".join(chan(n, x) for x in ch)}
        for n, w, ch in zip(c.layer_names, c.widths, c.channels)
    ]
    lines.append(render_table(rows))
    if not details.interventions:
        lines += ["", f"no interventions yet: {next_step or f'circuits ablate {c.id} --kind circuit --images DIR'}"]
        return safe_text("\n".join(lines), keep_lines=True)
    lines += ["", "interventions and evaluations:"]
    rows = [
        {
            "intervention": iv.id,
            "kind": iv.kind,
            "edges_cut": iv.edge_fraction,
            "image_set": e.image_set,
            "metric": e.metric,
            "clean": e.clean_value,
            "pruned": e.value,
            "random": e.baseline_value,
        }
        for iv in details.interventions
        for e in iv.evaluations
    ]
    bare = [iv.id for iv in details.interventions if not iv.evaluations]
    lines.append(render_table(rows))
    if bare:
        lines.append(f"(interventions without evaluations: {', '.join(map(str, bare))})")
    return safe_text("\n".join(lines), keep_lines=True)  # names come from the catalog: no terminal controls


# ---------------------------------------------------------------- progress


@contextmanager
def progress_bar(quiet: bool = False, *, eta: bool = False) -> Iterator[Callable[[str, int, int], None] | None]:
    """A rich progress bar fed by the pipeline's (stage, done, total) callbacks.

    Shown from the first update on, so a command that fails early prints only its error.

    Args:
        quiet: yield None instead (the library functions take `progress=None`).
        eta: add an estimated-time-remaining column (long jobs: thumbnails, reports).
    """
    if quiet:
        yield None
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description:<12}"), BarColumn(), TaskProgressColumn()]
    columns += [TextColumn("ETA"), TimeRemainingColumn()] if eta else [TimeElapsedColumn()]
    bar = Progress(*columns)
    tasks: dict[str, TaskID] = {}

    def update(stage: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


# Parameters whose flag is not their name with dashes, in every command.
_FLAGS = {
    "class_names": "--classes FILE",
    "timeout_s": "--timeout",
    "ks": "--k",
    "n_baselines": "--baselines",
    "mask_path": "--mask",
    "replace": "--force",
}
# Where one command's flag for a parameter differs from the others'.
_COMMAND_FLAGS: dict[str, dict[str, str]] = {
    "apply": {"out": "-o"},
    "compose": {"concepts": "--from"},
    "defend": {"embeddings": "--class-embeddings", "path": "--plot"},
    "thumbnails": {"folder": "--reference DIR"},
}
# Library settings (a call, an object) that a command sets with a flag.
_SETTINGS = {"`set_forward_timeout`": "--timeout", "`InlineExecutor()`": "--workers 0"}


def cli_message(text: str, command: str | None = None) -> str:
    """A library error's message as the command line says it: parameters become flags.

    Library errors name parameters as `` `images=` ``; a command's flag for a parameter is its
    name with dashes (`--images`, `--batch-size`) unless `_FLAGS` (or, for `command`,
    `_COMMAND_FLAGS`) says otherwise. Library settings in `_SETTINGS` become their flags too.

    Args:
        text: the library's message.
        command: the command as typed after `circuits` ("defend", "list circuits"), if known.
    """
    flags = _FLAGS | _COMMAND_FLAGS.get((command or "").split(" ")[0], {})
    for setting, flag in _SETTINGS.items():
        text = text.replace(setting, flag)
    return PARAMETER_MENTION.sub(lambda m: flags.get(m[1], "--" + m[1].replace("_", "-")), text)
