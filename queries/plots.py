"""Heat-maps of overlap matrices (matplotlib, Agg backend: no display needed).

matplotlib is imported inside the function so importing `queries` stays cheap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from queries.overlap import OverlapMatrix

__all__ = ["overlap_heatmap"]

_TITLES = {
    "jaccard": "Jaccard overlap of circuit neurons",
    "shared": "Neurons shared by two circuits",
    "weighted": "Weighted Jaccard of circuit edges (scores normalised per circuit)",
}
MAX_ANNOTATED = 20  # write values in cells only up to this many circuits: beyond, text is unreadable


def overlap_heatmap(matrix: OverlapMatrix, path: str | Path, *, dpi: int = 150) -> Path:
    """Write an overlap matrix as a labelled heat-map image (PNG, or any format by suffix).

    Cells show their values when there are at most `MAX_ANNOTATED` circuits; NaN cells are
    grey; colours span 0 … the largest off-diagonal value. The figure grows with the number of circuits so labels stay legible.

    Args:
        matrix: from `queries.overlap.overlap_matrix`.
        path: the image file to write (its folder must exist).
        dpi: resolution.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(matrix.values, dtype=np.float64)  # (N, N)
    n = len(matrix.labels)
    labels = [f"{label} (#{cid})" for label, cid in zip(matrix.labels, matrix.circuit_ids)]
    side = min(30.0, max(5.0, 0.45 * n + 3.0))
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    try:
        # Scale colours to the off-diagonal values (the diagonal is trivially 1, or a circuit's
        # size); the diagonal cells saturate but still print their value.
        off = values[~np.eye(n, dtype=bool)] if n > 1 else values.ravel()
        off = off[~np.isnan(off)]
        vmax = float(off.max()) if off.size and off.max() > 0 else float(np.nanmax(values)) if values.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
        cmap = plt.get_cmap("viridis").with_extremes(bad="#cccccc")
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=vmax)
        ax.set_xticks(range(n), labels=labels, rotation=60, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(n), labels=labels)
        ax.tick_params(labelsize=max(6, 11 - n // 8))
        bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label(f"{matrix.metric} (colour scale fitted to off-diagonal cells)")
        if n <= MAX_ANNOTATED:
            for i in range(n):
                for j in range(n):
                    v = values[i, j]
                    if np.isnan(v):
                        continue
                    text = f"{int(v)}" if matrix.metric == "shared" else f"{v:.2f}"
                    colour = "black" if v > 0.6 * vmax else "white"
                    ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=max(5, 10 - n // 4))
        ax.set_title(f"{matrix.model}: {_TITLES.get(matrix.metric, matrix.metric)}")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=dpi)
    finally:
        plt.close(fig)
    return out
