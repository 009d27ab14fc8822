"""The interventions of a circuit at a glance: one bar chart (SVG) and the rows of one table.

Each metric is one panel; in it each (intervention kind, image set) is a group of three bars:
the clean model, the circuit pruned, and the random circuit of the same shape (the baseline,
docs/method.md, "Interventions"). Every bar has a <title> with its value; the table under the
chart gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from catalog.refs import InterventionRef

__all__ = ["EffectRow", "effect_rows", "interventions_svg"]

SERIES = (
    ("clean", "clean model", "#9aa4b1"),
    ("pruned", "circuit pruned", "#e8742a"),
    ("random", "random circuit", "#1f5fa8"),
)
BAR = 14  # px per bar
GAP = 64  # px between groups (room for the image-set label)
PANEL_H = 120  # px of bar height range per panel


@dataclass(frozen=True)
class EffectRow:
    """One metric of one intervention on one image set."""

    intervention_id: int
    kind: str
    image_set: str
    n_images: int
    metric: str
    clean: float | None
    pruned: float
    random: float | None

    @property
    def drop(self) -> float | None:
        """clean − pruned (positive: pruning lowered the metric)."""
        return None if self.clean is None else self.clean - self.pruned


def effect_rows(interventions: Sequence[InterventionRef]) -> list[EffectRow]:
    """Every evaluation of the interventions, ordered by metric, kind, image set."""
    rows = [
        EffectRow(iv.id, iv.kind, e.image_set, e.n_images, e.metric, e.clean_value, e.value, e.baseline_value)
        for iv in interventions
        for e in iv.evaluations
    ]
    return sorted(rows, key=lambda r: (r.metric, r.kind, r.image_set, r.intervention_id))


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3g}"


def interventions_svg(rows: Sequence[EffectRow]) -> str:
    """One chart of all `rows` (from `effect_rows`): a panel per metric, three bars per group."""
    metrics = list(dict.fromkeys(r.metric for r in rows))
    groups = max((sum(1 for r in rows if r.metric == m) for m in metrics), default=1)
    left, top = 56, 34
    width = left + groups * (3 * BAR + GAP) + 20
    width = max(width, 520)
    panel = PANEL_H + 72  # title + bars + group labels
    height = top + panel * len(metrics)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="interventions-chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="interventions: clean, pruned and random per image set">'
        "<title>interventions: clean, pruned and random baseline per image set and metric</title>"
    ]
    x = left
    for key, text, color in SERIES:  # the legend
        out.append(
            f'<rect class="legend-{key}" x="{x}" y="8" width="12" height="12" fill="{color}"/>'
            f'<text class="legend-item" x="{x + 16}" y="18">{escape(text)}</text>'
        )
        x += 30 + 7 * len(text)
    for p, metric in enumerate(metrics):
        y0 = top + panel * p + 24
        mine = [r for r in rows if r.metric == metric]
        values = [v for r in mine for v in (r.clean, r.pruned, r.random) if v is not None]
        scale_top = max(max(values, default=0.0), 1.0 if metric != "kl" else 0.0) or 1.0
        base = y0 + PANEL_H
        out.append(f'<g class="panel" data-metric="{escape(metric)}">')
        out.append(f'<text class="panel-title" x="4" y="{y0 - 12}">{escape(metric)}</text>')
        for f in (0.0, 0.5, 1.0):
            y = base - PANEL_H * f
            out.append(
                f'<line class="grid" x1="{left - 4}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}"/>'
                f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{scale_top * f:.3g}</text>'
            )
        for g, r in enumerate(mine):
            gx = left + g * (3 * BAR + GAP) + GAP / 2
            for s, (key, text, color) in enumerate(SERIES):
                v = getattr(r, key)
                if v is None:
                    continue
                h = PANEL_H * max(v, 0.0) / scale_top
                tip = f"{r.kind} pruning, {r.image_set}: {metric} {text} {v:.4g}"
                out.append(
                    f'<rect class="bar bar-{key}" x="{gx + s * BAR:.1f}" y="{base - h:.1f}" width="{BAR - 2}" '
                    f'height="{max(h, 0.5):.1f}" fill="{color}" data-value="{v!r}"><title>{escape(tip)}</title></rect>'
                )
            name = r.image_set if len(r.image_set) <= 16 else r.image_set[:15] + "…"
            out.append(
                f'<text class="group" x="{gx + 1.5 * BAR:.1f}" y="{base + 14}" text-anchor="middle">{escape(r.kind)}</text>'
                f'<text class="group" x="{gx + 1.5 * BAR:.1f}" y="{base + 27}" text-anchor="middle">'
                f"<title>{escape(r.image_set)}</title>{escape(name)}</text>"
            )
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)
