"""Counterfactual figures: originals / counterfactuals / differences grids and training curves.

Functions return standalone matplotlib figures (:func:`xrl.render.subplots`: the backend is not touched, pyplot does
not keep them) and write a file only when given a path."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from xrl._validation import error_message
from xrl.render.images import save_figure, subplots


def _image(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[0] in (1, 3):   # CHW -> HWC
        x = np.moveaxis(x, 0, -1)
    return x[..., 0] if x.ndim == 3 and x.shape[-1] == 1 else x


def plot_counterfactual_grid(X: Any, X_cf: Any, orig_class: Any, cf_class: Any, target: Any,
                             path: str | os.PathLike | None = None, title: str | None = None):
    """Three rows: originals (with predicted class), counterfactuals (with class and target, green when valid,
    red when not) and |difference|. Returns the matplotlib figure; writes a PNG when ``path`` is given."""
    X, X_cf = np.asarray(X), np.asarray(X_cf)
    n = len(X)
    if n == 0 or len(X_cf) != n or not len(orig_class) == len(cf_class) == len(target) == n:
        raise ValueError(error_message("X, X_cf, orig_class, cf_class, target", "the same non-zero number of rows",
                                       (len(X), len(X_cf), len(orig_class), len(cf_class), len(target))))
    fig, axes = subplots(3, n, figsize=(1.6 * n, 5.2))
    for i in range(n):
        diff = np.abs(_image(X_cf[i]) - _image(X[i]))
        ok = int(cf_class[i]) == int(target[i])
        for row, (img, label, cmap) in enumerate([
                (_image(X[i]), f"pred {int(orig_class[i])}", "gray"),
                (_image(X_cf[i]), f"cf {int(cf_class[i])} (t {int(target[i])})", "gray"),
                (diff, f"L1 {diff.sum():.0f}", "magma")]):
            ax = axes[row, i]
            ax.imshow(img, cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(label, fontsize=8, color=("green" if ok else "red") if row == 1 else "black")
    for row, name in enumerate(["X", "X_cf", "|X_cf - X|"]):
        axes[row, 0].set_ylabel(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, dpi=110)
    return fig


def plot_training_log(log: str | os.PathLike, path: str | os.PathLike | None = None, smooth: int = 5):
    """Reward and losses against the training step from a :class:`~xrl.counterfactual.JSONLLogger` file."""
    rows = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    keys = [k for k in ("reward", "critic_loss", "actor_loss", "sparsity_loss", "consistency_loss")
            if rows and k in rows[0]]
    fig, axes = subplots(1, max(len(keys), 1), figsize=(3.6 * max(len(keys), 1), 3))
    steps = np.array([r["step"] for r in rows])
    for ax, k in zip(axes[0], keys):
        v = np.array([r[k] for r in rows], dtype=float)
        ax.plot(steps, v, alpha=0.35, color="C0")
        if len(v) >= smooth:
            ax.plot(steps[smooth - 1:], np.convolve(v, np.ones(smooth) / smooth, mode="valid"), color="C0")
        ax.set_title(k)
        ax.set_xlabel("step")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, dpi=110)
    return fig
