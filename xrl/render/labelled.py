"""Labelled image grids written as PNG through a ``matplotlib.figure.Figure`` (never pyplot: the backend and the
user's open figures are left alone)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._validation import error_message


def _hwc(img: Any) -> np.ndarray:
    from .images import to_hwc

    a = np.asarray(img)
    if a.ndim == 2:
        return a
    a = to_hwc(a)
    return a[..., 0] if a.shape[-1] == 1 else a


def labelled_grid(rows: Sequence[Sequence[Any]], path: str | os.PathLike | None = None, *,
                  row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
                  title: str | None = None, legend: Sequence[tuple[Any, str]] | None = None,
                  cell_titles: Sequence[Sequence[str]] | None = None,
                  cell_inches: float = 1.3, cmap: str = "gray", dpi: int = 100):
    """A grid of images with row labels (left), column labels (top), a title and an optional colour legend.

    Parameters
    ----------
    rows : list of lists of images
        ``rows[r][c]``: ``[H, W]`` (drawn with ``cmap``, values in [0, 1]), ``[H, W, 3|4]`` or ``[3|4, H, W]``.
    path : path, optional
        PNG to write.
    row_labels, col_labels : list of str, optional
    cell_titles : list of lists of str, optional
        A title above every image (``cell_titles[r][c]``), instead of ``col_labels``.
    legend : list of (colour, label), optional
        E.g. one entry per NMF direction; drawn under the grid.

    Returns
    -------
    matplotlib.figure.Figure
        Not registered with pyplot, so nothing is shown and nothing needs closing.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n_rows = len(rows)
    n_cols = max((len(r) for r in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError(error_message("rows", "at least one row with one image", rows))
    for name, labels, n in (("row_labels", row_labels, n_rows), ("col_labels", col_labels, n_cols)):
        if labels is not None and len(labels) != n:
            raise ValueError(error_message(name, f"{n} labels", list(labels)))
    legend_rows = -(-len(legend) // 4) if legend else 0
    extra_h = (0.45 if title else 0) + (0.3 if col_labels else 0) + 0.25 * legend_rows
    extra_h += 0.3 * n_rows if cell_titles else 0
    label_w = 1.4 if row_labels else 0
    fig = Figure(figsize=(label_w + cell_inches * n_cols, extra_h + cell_inches * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(rows[r]) and rows[r][c] is not None:
                img = _hwc(rows[r][c])
                ax.imshow(img, cmap=cmap if img.ndim == 2 else None, vmin=0, vmax=1 if img.dtype != np.uint8 else 255,
                          interpolation="nearest")
            if cell_titles is not None and c < len(cell_titles[r]):
                ax.set_title(cell_titles[r][c], fontsize=9)
            elif col_labels is not None and r == 0:
                ax.set_title(col_labels[c], fontsize=9)
            if row_labels is not None and c == 0:
                ax.set_ylabel(row_labels[r], fontsize=9, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=11)
    if legend:
        handles = [Patch(facecolor=np.clip(np.asarray(colour, dtype=float), 0, 1), label=label)
                   for colour, label in legend]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.25 * legend_rows / fig.get_figheight() + (0.02 if legend else 0), 1, 1))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig
