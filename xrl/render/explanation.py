"""Pictures of a counterfactual :class:`~xrl.counterfactual.Explanation`, whatever the layout of its images.

Seed 000 draws ``explanation.data['orig']['X'][i]`` with ``imshow``: that works for TensorFlow's ``[N, 28, 28, 1]``
only after matplotlib accepts it, and fails for PyTorch's ``[N, 1, 28, 28]``. :func:`as_image` turns one image of
any layout into what ``imshow`` takes; :func:`plot_explanation` draws originals over counterfactuals (the seed's
figure) through a ``matplotlib.figure.Figure`` (nothing is shown, the backend is left alone).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_scalar, error_message


def as_image(x: Any) -> np.ndarray:
    """One image as ``imshow`` takes it: ``[H, W]`` for grey images, ``[H, W, 3|4]`` for colour.

    Accepts ``[H, W]``, ``[1|3|4, H, W]`` (channels first), ``[H, W, 1|3|4]`` (channels last), a leading batch
    dimension of 1, and torch tensors.

    Examples
    --------
    >>> as_image(np.zeros((1, 28, 28))).shape, as_image(np.zeros((28, 28, 1))).shape
    ((28, 28), (28, 28))
    >>> as_image(np.zeros((3, 64, 64))).shape
    (64, 64, 3)
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        return a
    if a.ndim == 3:
        first, last = a.shape[0], a.shape[-1]
        if first in (1, 3, 4) and last not in (1, 3, 4):               # [C, H, W]
            return a[0] if first == 1 else np.moveaxis(a, 0, -1)
        if last in (1, 3, 4):                                          # [H, W, C]
            return a[..., 0] if last == 1 else a
    raise ValueError(error_message("x", "one image [H, W], [C, H, W] or [H, W, C] with C in (1, 3, 4)", a,
                                   "index a single image out of a batch first, e.g. X[i]"))


def _labels(cls: Any, n: int) -> list[str]:
    c = np.asarray(cls)
    if c.ndim == 2 and c.shape[1] > 1:      # one-hot or scores
        c = c.argmax(1)
    return [str(int(v)) for v in c.reshape(-1)[:n]]


def plot_explanation(explanation: Any, n: int = 5, path: str | os.PathLike | None = None, *, diff: bool = True,
                     cmap: str = "gray", title: str | None = None):
    """The seed's figure: originals (row ``X``) over counterfactuals (row ``X_cf``), labelled with the predicted
    classes, and ``|X_cf - X|`` when ``diff``.

    Parameters
    ----------
    explanation : Explanation
        From ``CounterfactualRL.explain``; reads ``data['orig']`` / ``data['cf']`` (``X`` and ``class``) and
        ``data['target']`` when present (a valid counterfactual's label is green, an invalid one red).
    n : int, default 5
        Number of instances (the first ``n``).
    path : path, optional
        PNG to write.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    check_scalar("n", n, int, low=1)
    data = getattr(explanation, "data", explanation)
    try:
        X, X_cf = np.asarray(data["orig"]["X"]), np.asarray(data["cf"]["X"])
    except (KeyError, TypeError):
        raise TypeError(error_message("explanation", "a counterfactual Explanation (data['orig']['X'], "
                                      "data['cf']['X'])", type(explanation).__name__)) from None
    n = min(n, len(X))
    y, y_cf = _labels(data["orig"]["class"], n), _labels(data["cf"]["class"], n)
    t = None
    if data.get("target") is not None:
        target = np.asarray(data["target"])
        target = target.argmax(1) if target.ndim == 2 and target.shape[1] > 1 else target.reshape(-1)
        t = _labels(np.broadcast_to(target, (len(X),)) if len(target) == 1 else target, n)
    rows = 3 if diff else 2
    fig = Figure(figsize=(1.7 * n, 1.9 * rows))
    axes = fig.subplots(rows, n, squeeze=False)
    for i in range(n):
        a, b = as_image(X[i]), as_image(X_cf[i])
        panels = [(a, f"Label: {y[i]}", "black"),
                  (b, f"Label: {y_cf[i]}" + (f" (target {t[i]})" if t else ""),
                   ("green" if y_cf[i] == t[i] else "red") if t else "black")]
        if diff:
            panels.append((np.abs(b.astype(float) - a.astype(float)), "|X_cf - X|", "black"))
        for row, (img, label, colour) in enumerate(panels):
            ax = axes[row, i]
            ax.imshow(img, cmap=cmap if img.ndim == 2 else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(label, fontsize=8, color=colour)
    for row, name in enumerate(["X", "X_cf", "difference"][:rows]):
        axes[row, 0].set_ylabel(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig
