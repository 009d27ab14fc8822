"""Heat-maps of overlap matrices (matplotlib, Agg backend: no display needed).

matplotlib is imported inside the functions so importing `queries` stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from catalog.errors import CircuitsError
from queries.overlap import OverlapMatrix

__all__ = ["MAX_ANNOTATED", "heatmap", "overlap_heatmap"]

_TITLES = {
    "jaccard": "Jaccard overlap of circuit neurons",
    "shared": "neurons shared by two circuits",
    "weighted": "weighted Jaccard of circuit edges\n(CLA scores normalised per circuit)",
}
MAX_ANNOTATED = 20  # write values in cells only up to this many rows/columns: beyond, text is unreadable


def heatmap(
    values: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
    value_label: str = "",
    integer: bool = False,
    dpi: int = 150,
) -> Path:
    """Write a labelled heat-map image (PNG, or any format matplotlib knows by the suffix).

    Cells show their values when the matrix has at most `MAX_ANNOTATED` rows and columns; NaN
    cells are grey. Colours span 0 … the largest value off the diagonal of a square matrix (the
    diagonal of an overlap matrix is trivial and would wash the rest out); diagonal cells
    saturate but still print their value. The figure grows with the matrix so labels stay legible.

    Args:
        values: (R, C) numbers.
        row_labels: R labels.
        col_labels: C labels.
        path: the image file to write (its folder must exist).
        title: the figure title.
        value_label: the colour bar's label.
        integer: print cell values as integers.
        dpi: resolution.

    Returns:
        The path written.

    Raises:
        CircuitsError: the folder of `path` does not exist.
    """
    out = Path(path)
    if not out.parent.is_dir():
        raise CircuitsError(f"cannot write {out}: folder {out.parent} does not exist (create it first)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(values, dtype=np.float64)  # (R, C)
    n_rows, n_cols = values.shape
    assert len(row_labels) == n_rows and len(col_labels) == n_cols, "one label per row and column"
    scale = values[~np.eye(n_rows, dtype=bool)] if n_rows == n_cols and n_rows > 1 else values.ravel()
    scale = scale[~np.isnan(scale)]
    vmax = float(scale.max()) if scale.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    width = min(30.0, max(6.5, 0.45 * n_cols + 3.5))
    height = min(30.0, max(5.0, 0.45 * n_rows + 3.0))
    fig, ax = plt.subplots(figsize=(width + 1.5, height))
    try:
        cmap = plt.get_cmap("viridis").with_extremes(bad="#cccccc")
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=vmax)
        ax.set_xticks(range(n_cols), labels=list(col_labels), rotation=60, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(n_rows), labels=list(row_labels))
        ax.tick_params(labelsize=max(6, 11 - max(n_rows, n_cols) // 8))
        bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label(value_label)
        if max(n_rows, n_cols) <= MAX_ANNOTATED:
            size = max(5, 10 - max(n_rows, n_cols) // 4)
            for i in range(n_rows):
                for j in range(n_cols):
                    v = values[i, j]
                    if np.isnan(v):
                        continue
                    text = f"{int(round(v))}" if integer else f"{v:.2f}"
                    colour = "black" if v > 0.6 * vmax else "white"
                    ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=size)
        ax.set_title(title, fontsize=11)
        fig.tight_layout()
        from catalog.atomic import atomic_path

        with atomic_path(out) as tmp:  # whole or not at all
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return out


def overlap_heatmap(matrix: OverlapMatrix, path: str | Path, *, dpi: int = 150) -> Path:
    """Write an overlap matrix (`queries.overlap.overlap_matrix`) as a heat-map; see `heatmap`.

    Args:
        matrix: the matrix; its labels become "concept (#circuit id)".
        path: the image file to write.
        dpi: resolution.

    Returns:
        The path written.
    """
    labels = [f"{label} (#{cid})" for label, cid in zip(matrix.labels, matrix.circuit_ids)]
    return heatmap(
        matrix.values,
        labels,
        labels,
        path,
        title=f"{matrix.model}: {_TITLES.get(matrix.metric, matrix.metric)}",
        value_label=f"{matrix.metric} (colours span the off-diagonal cells)",
        integer=matrix.metric == "shared",
        dpi=dpi,
    )
