"""A circuit drawn as a layered graph in server-side SVG (no external assets; readable without JS).

Layers are columns in forward order; each column shows the circuit's neurons (sized by total
attribution) and, faded behind them, the layer's strongest non-circuit neurons. Edges between
circuit neurons are coloured and sized by score on one scale that the legend under the drawing
states (colour bar and line widths with their scores). Every edge shows its score at hover (a
label in the drawing and a <title>); labels are drawn last, on a halo, so no edge covers them.
Edges below `min_score` are left out (the page's `?min_score=` filter); each kept edge carries
`data-score` so the page's slider can hide more without a reload. Circuit nodes carry
`class="neuron"` and `data-layer`/`data-channel`; faded ones `class="neuron-faded"`; neurons
shared with other compared circuits also `shared`; neurons of anchored layers `anchored`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from html import escape

from circuits.web.data import CircuitView, Node, neuron_id_text

__all__ = ["circuit_svg", "edge_color", "heatmap_svg", "kept_edges"]

WIDTH = 1320  # drawing width in px: fills the page's main column (graph-wrap scales it down further)
LEFT = 60  # room for the first column's labels
RIGHT = 215  # room for the last column's labels (class names, LABEL_CHARS at 11 px)
MIN_COLUMN = 110  # px between columns at least (10 layers fit the width)
ROW = 34  # px between nodes in a column
TOP = 52  # room for the layer names
LEGEND = 74  # room for the legend under the nodes
MAX_R = 14.0
MIN_R = 4.0
LABEL_CHARS = 28  # longest node label drawn (the full name is in the node's tooltip)

_LIGHT, _DARK = (158, 202, 225), (8, 48, 107)  # edge colour at score 0 and at the top score


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def edge_color(frac: float) -> str:
    """The edge colour of a score that is `frac` of the circuit's top score (light → dark blue)."""
    f = min(max(frac, 0.0), 1.0)
    r, g, b = (round(lo + (hi - lo) * f) for lo, hi in zip(_LIGHT, _DARK))
    return f"#{r:02x}{g:02x}{b:02x}"


def _edge_width(frac: float) -> float:
    return 0.8 + 5.2 * min(max(frac, 0.0), 1.0)


def kept_edges(view: CircuitView, min_score: float | None) -> list[tuple[int, int, float]]:
    """The circuit's edges at or above `min_score` (all when None), strongest first."""
    edges = sorted(view.edges, key=lambda e: (-e[2], e[0], e[1]))
    return edges if min_score is None else [e for e in edges if e[2] >= min_score]


def _short(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(chars - 1, 1)] + "…"


def node_label(n: Node) -> str:
    """The text beside a node: its channel, and its class name on a logit layer."""
    return f"{n.channel} {n.label}" if n.label else str(n.channel)


def _legend(out: list[str], y: float, top_score: float, uid: str) -> None:
    """Colour bar and line-width samples with their scores, node meanings (one row at `y`)."""
    out.append(f'<g class="legend" transform="translate({LEFT - 40},{y:.0f})">')
    out.append('<text class="legend-title" x="0" y="12">edge score (CLA)</text>')
    grad = f"edge-scale-{uid}"
    stops = "".join(f'<stop offset="{f:.2f}" stop-color="{edge_color(f)}"/>' for f in (0.0, 0.25, 0.5, 0.75, 1.0))
    out.append(f'<defs><linearGradient id="{grad}" x1="0" x2="1" y1="0" y2="0">{stops}</linearGradient></defs>')
    out.append(f'<rect class="legend-bar" x="0" y="20" width="220" height="10" fill="url(#{grad})"/>')
    for f in (0.0, 0.5, 1.0):
        anchor = "start" if f == 0 else "end" if f == 1 else "middle"
        out.append(
            f'<text class="legend-tick" x="{220 * f:.0f}" y="44" text-anchor="{anchor}">{_fmt(top_score * f)}</text>'
        )
    x = 260.0
    for f in (0.1, 0.5, 1.0):
        out.append(
            f'<line class="legend-width" x1="{x}" y1="25" x2="{x + 40}" y2="25" stroke="{edge_color(f)}" '
            f'stroke-width="{_edge_width(f):.2f}"/>'
            f'<text class="legend-tick" x="{x + 20}" y="44" text-anchor="middle">{_fmt(top_score * f)}</text>'
        )
        x += 70
    x += 20
    for cls, text in (
        ("key-neuron", "circuit neuron (size: total attribution)"),
        ("key-faded", "strong neuron not in the circuit"),
        ("key-neuron key-anchored", "anchored (fixed by the search)"),
    ):
        out.append(
            f'<circle class="{cls}" cx="{x + 6}" cy="25" r="6"/><text class="legend-item" x="{x + 16}" y="29">'
            f"{escape(text)}</text>"
        )
        x += 18 + 6.2 * len(text) + 18
    out.append("</g>")


def circuit_svg(
    view: CircuitView,
    href: Callable[[Node], str],
    *,
    shared: Iterable[int] = (),
    title: str | None = None,
    min_score: float | None = None,
    legend: bool = True,
) -> str:
    """The SVG markup of a circuit's layered graph.

    Args:
        view: from `circuits.web.data.circuit_view`.
        href: link target of each node (a neuron page, or an anchor in a report).
        shared: neuron ids to highlight as shared with other circuits.
        title: accessible title of the drawing.
        min_score: leave out edges scoring below this (None: draw all).
        legend: draw the score legend under the graph.

    Returns:
        One `<svg>` element (inline-able in HTML); it scales to its container's width.
    """
    shared = set(shared)
    layers = list(view.details.circuit.layer_names)
    fixed = set((view.details.circuit.fixed or {}).keys())
    by_layer: dict[int, list[Node]] = {i: [] for i in range(len(layers))}
    for n in view.nodes:
        by_layer[n.layer_index].append(n)
    for nodes in by_layer.values():  # circuit neurons first (strongest on top), faded below
        nodes.sort(key=lambda n: (not n.in_circuit, -n.total, n.channel))
    rows = max((len(c) for c in by_layer.values()), default=1)
    gap = max(float(MIN_COLUMN), (WIDTH - LEFT - RIGHT) / max(len(layers) - 1, 1))
    width = round(LEFT + gap * max(len(layers) - 1, 0) + RIGHT)
    height = TOP + ROW * rows + 12 + (LEGEND if legend else 0)
    top_total = max((n.total for n in view.nodes), default=0.0) or 1.0
    pos: dict[int, tuple[float, float, float]] = {}
    for i, col in by_layer.items():
        for j, n in enumerate(col):
            r = MIN_R + (MAX_R - MIN_R) * math.sqrt(max(n.total, 0.0) / top_total)
            pos[n.neuron_id] = (LEFT + gap * i, TOP + ROW * j + ROW / 2, r)
    cid = view.details.circuit.id
    label = escape(title or f"circuit {cid}: {view.details.run.concept} on {view.model}")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="circuit-graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet" role="img" aria-label="{label}" '
        f'data-circuit="{cid}">',
        f"<title>{label}</title>",
    ]
    top_score = max((s for _, _, s in view.edges), default=0.0) or 1.0
    names = {n.neuron_id: n for n in view.nodes}
    drawn = [e for e in kept_edges(view, min_score) if e[0] in pos and e[1] in pos]
    out.append(f'<g class="edges" data-total="{len(view.edges)}">')
    for src, dst, score in reversed(drawn):  # strongest drawn last (on top)
        (x1, y1, r1), (x2, y2, r2) = pos[src], pos[dst]
        frac = max(score, 0.0) / top_score
        a, b = names[src], names[dst]
        tip = f"{a.layer}:{node_label(a)} → {b.layer}:{node_label(b)}  score {_fmt(score)}"
        mx, my = (x1 + r1 + x2 - r2) / 2, (y1 + y2) / 2
        out.append(
            f'<g class="edge" data-score="{score!r}"><line class="edge" x1="{x1 + r1:.1f}" y1="{y1:.1f}" '
            f'x2="{x2 - r2:.1f}" y2="{y2:.1f}" stroke="{edge_color(frac)}" stroke-width="{_edge_width(frac):.2f}">'
            f"<title>{escape(tip)}</title></line>"
            f'<text class="edge-score" x="{mx:.1f}" y="{my - 4:.1f}" text-anchor="middle">{_fmt(score)}</text></g>'
        )
    out.append("</g>")
    labels: list[str] = []
    for faded in (True, False):  # faded neurons behind the circuit's
        for n in view.nodes:
            if n.in_circuit == faded:
                continue
            x, y, r = pos[n.neuron_id]
            ident = neuron_id_text(view.model, n.layer, n.channel) + (f" ({n.label})" if n.label else "")
            classes = "neuron" if n.in_circuit else "neuron-faded"
            if n.neuron_id in shared:
                classes += " shared"
            if n.in_circuit and n.layer in fixed:
                classes += " anchored"
            tip = f"{ident}  total attribution {_fmt(n.total)}" + ("" if n.in_circuit else "  (not in the circuit)")
            if n.in_circuit and n.layer in fixed:
                tip += "  (anchored)"
            out.append(
                f'<a href="{escape(href(n))}"><circle class="{classes}" cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" '
                f'data-layer="{escape(n.layer)}" data-channel="{n.channel}" data-total="{_fmt(n.total)}">'
                f"<title>{escape(tip)}</title></circle></a>"
            )
            text = _short(node_label(n), LABEL_CHARS)
            labels.append(
                f'<text class="channel{"" if n.in_circuit else " faded"}" x="{x + r + 3:.1f}" y="{y + 4:.1f}">'
                f"{escape(text)}</text>"
            )
    chars = max(int((gap - 12) / 7), 6)  # a layer name stays inside its column
    for i, name in enumerate(layers):
        x = LEFT + gap * i
        short = _short(name, chars)
        tip = f"<title>{escape(name)}</title>" if short != name else ""
        labels.append(
            f'<text class="layer-name" x="{x:.1f}" y="20" text-anchor="middle" data-layer="{escape(name)}">{tip}'
            f"{escape(short)}</text>"
        )
        k = sum(1 for n in by_layer[i] if n.in_circuit)
        mark = " · anchored" if name in fixed else ""
        labels.append(f'<text class="layer-k" x="{x:.1f}" y="38" text-anchor="middle">k={k}{mark}</text>')
    out.append('<g class="labels">' + "".join(labels) + "</g>")  # last: never under an edge
    if legend:
        _legend(out, TOP + ROW * rows + 12, top_score, str(cid))
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
