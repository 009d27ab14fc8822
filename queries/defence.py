"""The typographic-attack defence's trade-off plot (read side; no torch).

`plot_tradeoff(rows, path)` draws attack success against clean accuracy for every pruned text
circuit (one marker per pruning kind) beside the random circuits of the same shapes and the
unpruned model, and rings the recommended row. Rows are plain mappings with the columns of
`ingest.defence.defend.DefenceRow.as_dict()`, so the plot needs nothing but the numbers.

matplotlib is used through a `Figure` with the Agg canvas: no global backend is set, so importing
or calling this never changes a notebook's matplotlib state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from catalog.errors import CircuitsError

__all__ = ["plot_tradeoff"]

_MARKERS = {"circuit": "o", "edge": "s"}


def plot_tradeoff(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    recommended: int | None = None,
    budget: float | None = None,
    title: str = "typographic-attack defence",
    dpi: int = 150,
) -> Path:
    """Write the attack-success vs clean-accuracy plot (PNG, or any suffix matplotlib knows).

    Args:
        rows: one mapping per pruned circuit with `kind`, `k`, `attack_success`,
            `attack_success_random`, `clean_accuracy`, `clean_accuracy_random`,
            `attack_success_clean`, `clean_accuracy_clean`.
        path: the image file to write.
        recommended: index into `rows` of the recommended row, ringed in the plot.
        budget: the clean-accuracy budget (share), drawn as a vertical line.

    Returns:
        The written path.

    Raises:
        CircuitsError: no rows, or the file cannot be written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise CircuitsError("nothing to plot: the defence sweep has no rows")
    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    pct = 100.0
    base_acc = float(rows[0]["clean_accuracy_clean"])
    base_att = float(rows[0]["attack_success_clean"])
    for kind, marker in _MARKERS.items():
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        ax.scatter(
            [pct * float(r["clean_accuracy"]) for r in sel],
            [pct * float(r["attack_success"]) for r in sel],
            marker=marker,
            label=f"text circuit, {kind} pruning",
            zorder=3,
        )
        ax.scatter(
            [pct * float(r["clean_accuracy_random"]) for r in sel],
            [pct * float(r["attack_success_random"]) for r in sel],
            marker=marker,
            facecolors="none",
            edgecolors="grey",
            label=f"random circuit, {kind} pruning",
            zorder=2,
        )
    ax.scatter([pct * base_acc], [pct * base_att], marker="*", s=160, color="black", label="unpruned", zorder=4)
    if recommended is not None:
        r = rows[recommended]
        ax.scatter(
            [pct * float(r["clean_accuracy"])],
            [pct * float(r["attack_success"])],
            s=260,
            facecolors="none",
            edgecolors="red",
            linewidths=2,
            label="recommended",
            zorder=5,
        )
    if budget is not None:
        ax.axvline(
            pct * (base_acc - budget),
            color="red",
            linestyle=":",
            linewidth=1,
            label=f"clean-accuracy budget (−{pct * budget:.1f} points)",
        )
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("attack success (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out = Path(path)
    try:
        fig.savefig(out, dpi=dpi)
    except OSError as exc:
        raise CircuitsError(f"cannot write the plot {out} ({exc.strerror}): choose another `path=`") from exc
    return out
