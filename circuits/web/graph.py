"""A circuit drawn as a layered graph in server-side SVG (no JavaScript, no external assets).

Layers are columns in forward order; each column shows the circuit's neurons (sized by total
attribution) and, faded behind them, the layer's strongest non-circuit neurons. Edges between
circuit neurons are drawn with width and opacity by score. Every node and edge has a <title>
(the browser's hover tooltip) with its scores. Circuit nodes carry `class="neuron"` and
`data-layer`/`data-channel`; faded ones `class="neuron-faded"`; neurons shared with other
compared circuits also `shared`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from html import escape

from circuits.web.data import CircuitView, Node, neuron_id_text

__all__ = ["circuit_svg", "heatmap_svg"]

COLUMN = 170  # px between layer columns
ROW = 34  # px between nodes in a column
TOP = 48  # room for the layer names
MAX_R = 14.0
MIN_R = 4.0


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def circuit_svg(
    view: CircuitView,
    href: Callable[[Node], str],
    *,
    shared: Iterable[int] = (),
    title: str | None = None,
) -> str:
    """The SVG markup of a circuit's layered graph.

    Args:
        view: from `circuits.web.data.circuit_view`.
        href: link target of each node (a neuron page, or an anchor in a report).
        shared: neuron ids to highlight as shared with other circuits.
        title: accessible title of the drawing.

    Returns:
        One `<svg>` element (inline-able in HTML).
    """
    shared = set(shared)
    layers = list(view.details.circuit.layer_names)
    by_layer: dict[int, list[Node]] = {i: [] for i in range(len(layers))}
    for n in view.nodes:
        by_layer[n.layer_index].append(n)
    for column in by_layer.values():  # circuit neurons first (strongest on top), faded below
        column.sort(key=lambda n: (not n.in_circuit, -n.total, n.channel))
    rows = max((len(c) for c in by_layer.values()), default=1)
    width = 60 + COLUMN * max(len(layers) - 1, 0) + 120
    height = TOP + ROW * rows + 20
    top_total = max((n.total for n in view.nodes), default=0.0) or 1.0
    pos: dict[int, tuple[float, float, float]] = {}
    for i, column in by_layer.items():
        for j, n in enumerate(column):
            r = MIN_R + (MAX_R - MIN_R) * math.sqrt(max(n.total, 0.0) / top_total)
            pos[n.neuron_id] = (60 + COLUMN * i, TOP + ROW * j + ROW / 2, r)
    label = escape(title or f"circuit {view.details.circuit.id}: {view.details.run.concept} on {view.model}")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="circuit-graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{label}" '
        f'data-circuit="{view.details.circuit.id}">',
        f"<title>{label}</title>",
    ]
    for i, name in enumerate(layers):
        out.append(f'<text class="layer-name" x="{60 + COLUMN * i}" y="20" text-anchor="middle">{escape(name)}</text>')
        k = sum(1 for n in by_layer[i] if n.in_circuit)
        out.append(f'<text class="layer-k" x="{60 + COLUMN * i}" y="36" text-anchor="middle">k={k}</text>')
    top_score = max((s for _, _, s in view.edges), default=0.0) or 1.0
    names = {n.neuron_id: n for n in view.nodes}
    out.append('<g class="edges">')
    for src, dst, score in sorted(view.edges, key=lambda e: e[2]):  # strongest drawn last (on top)
        if src not in pos or dst not in pos:
            continue
        (x1, y1, r1), (x2, y2, r2) = pos[src], pos[dst]
        frac = max(score, 0.0) / top_score
        a, b = names[src], names[dst]
        tip = f"{a.layer}:{a.channel} → {b.layer}:{b.channel}  score {_fmt(score)}"
        out.append(
            f'<line class="edge" x1="{x1 + r1:.1f}" y1="{y1:.1f}" x2="{x2 - r2:.1f}" y2="{y2:.1f}" '
            f'stroke-width="{0.8 + 5.2 * frac:.2f}" stroke-opacity="{0.25 + 0.7 * frac:.2f}">'
            f"<title>{escape(tip)}</title></line>"
        )
    out.append("</g>")
    for faded in (True, False):  # faded neurons behind the circuit's
        for n in view.nodes:
            if n.in_circuit == faded:
                continue
            x, y, r = pos[n.neuron_id]
            ident = neuron_id_text(view.model, n.layer, n.channel)
            classes = "neuron" if n.in_circuit else "neuron-faded"
            if n.neuron_id in shared:
                classes += " shared"
            tip = f"{ident}  total attribution {_fmt(n.total)}" + ("" if n.in_circuit else "  (not in the circuit)")
            out.append(
                f'<a href="{escape(href(n))}"><circle class="{classes}" cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" '
                f'data-layer="{escape(n.layer)}" data-channel="{n.channel}" data-total="{_fmt(n.total)}">'
                f"<title>{escape(tip)}</title></circle>"
                f'<text class="channel{"" if n.in_circuit else " faded"}" x="{x + r + 3:.1f}" y="{y + 4:.1f}">'
                f"{n.channel}</text></a>"
            )
    out.append("</svg>")
    return "\n".join(out)


def _color(v: float) -> str:
    """White → deep blue for 0 → 1 (NaN: grey)."""
    if not math.isfinite(v):
        return "#ddd"
    v = min(max(v, 0.0), 1.0)
    r, g, b = (int(round(255 + (t - 255) * v)) for t in (31, 78, 160))
    return f"rgb({r},{g},{b})"


def heatmap_svg(labels: list[str], values, counts=None, *, cell: int = 56) -> str:
    """An overlap heat-map (Jaccard in [0, 1]) as SVG, each cell with its value and a <title>.

    Args:
        labels: one per row/column.
        values: (N, N) floats in [0, 1] (NaN allowed).
        counts: optional (N, N) shared-neuron counts shown in the tooltips.
        cell: cell side in px.
    """
    n = len(labels)
    left, top = 150, 110
    width, height = left + cell * n + 130, top + cell * n + 10  # room for the slanted column labels
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="overlap heat-map"><title>Jaccard overlap</title>'
    ]
    for i, name in enumerate(labels):
        out.append(f'<text x="{left - 6}" y="{top + cell * i + cell / 2 + 4}" text-anchor="end">{escape(name)}</text>')
        x = left + cell * i + cell / 2
        out.append(f'<text x="{x}" y="{top - 8}" transform="rotate(-40 {x} {top - 8})">{escape(name)}</text>')
    for i in range(n):
        for j in range(n):
            v = float(values[i][j])
            tip = f"{labels[i]} × {labels[j]}: Jaccard {v:.3f}" if math.isfinite(v) else f"{labels[i]} × {labels[j]}: —"
            if counts is not None:
                tip += f", {int(counts[i][j])} shared neurons"
            text_color = "#fff" if math.isfinite(v) and v > 0.55 else "#222"
            out.append(
                f'<rect class="cell" x="{left + cell * j}" y="{top + cell * i}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="{_color(v)}"><title>{escape(tip)}</title></rect>'
                f'<text x="{left + cell * j + cell / 2 - 1}" y="{top + cell * i + cell / 2 + 4}" text-anchor="middle" '
                f'fill="{text_color}">{"—" if not math.isfinite(v) else f"{v:.2f}"}</text>'
            )
    out.append("</svg>")
    return "\n".join(out)
