"""Interpretability scores against ground-truth object channels (MinAtar observations are object masks).

For each NMF direction of a layer, its spatial map (activation or attribution projected on the direction, per
observation and position) is correlated with each object channel of the observations, pooled to the layer's spatial
size. A direction "matches" an object when the Pearson correlation over all observations x positions is high.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from xrl._validation import check_scalar, error_message

__all__ = ["object_correlations", "best_object_matches", "count_matched_objects"]


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def object_correlations(maps: Any, objects: Any, *, maps_layout: str = "hwc") -> np.ndarray:
    """Pearson correlation between every direction map and every object channel.

    Parameters
    ----------
    maps : array [N, h, w, F] (``maps_layout="hwc"``, as ``LayerNMF.acts_reduced``) or [N, F, h, w] (``"chw"``)
    objects : array [N, C, H, W]
        Object channels of the same observations (e.g. MinAtar ``info["objects"]`` or the observations themselves).
        Pooled to ``h x w`` by adaptive average pooling (the fraction of each cell's area covered by the object).

    Returns
    -------
    ndarray [F, C]; 0 where a map or an object channel is constant.
    """
    m = _np(maps).astype(np.float64)
    o = _np(objects).astype(np.float32)
    if m.ndim != 4 or o.ndim != 4:
        raise ValueError(error_message("maps/objects", "4-d arrays [N, h, w, F] and [N, C, H, W]", m if m.ndim != 4
                                       else o))
    if maps_layout == "chw":
        m = np.moveaxis(m, 1, -1)
    elif maps_layout != "hwc":
        raise ValueError(error_message("maps_layout", "'hwc' or 'chw'", maps_layout))
    if m.shape[0] != o.shape[0]:
        raise ValueError(error_message("objects", f"{m.shape[0]} observations (as maps)", o))
    N, h, w, Fn = m.shape
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(o), (h, w)).numpy().astype(np.float64)  # [N, C, h, w]
    a = m.reshape(-1, Fn)                                                  # [N*h*w, F]
    b = np.moveaxis(pooled, 1, -1).reshape(-1, o.shape[1])                 # [N*h*w, C]
    a = a - a.mean(0)
    b = b - b.mean(0)
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (a.T @ b) / np.outer(na, nb)
    return np.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)


def best_object_matches(corr: np.ndarray, channel_names: Sequence[str] | None = None) -> list[dict]:
    """Per direction: the object channel with the highest correlation (``{"direction", "object", "corr"}``)."""
    corr = np.asarray(corr)
    names = list(channel_names) if channel_names is not None else [str(i) for i in range(corr.shape[1])]
    return [{"direction": f, "object": names[int(corr[f].argmax())], "corr": float(corr[f].max())}
            for f in range(corr.shape[0])]


def count_matched_objects(corr: np.ndarray, threshold: float = 0.5,
                          channel_names: Sequence[str] | None = None) -> dict:
    """How many DIFFERENT objects are matched by different directions with correlation >= ``threshold``.

    Uses the best one-to-one assignment of directions to objects (Hungarian algorithm on the correlations), so one
    object matched by two directions counts once. Returns ``{"count", "pairs": [(direction, object, corr)], ...}``.
    """
    check_scalar("threshold", threshold, (int, float), low=-1, high=1)
    from scipy.optimize import linear_sum_assignment
    corr = np.asarray(corr, np.float64)
    names = list(channel_names) if channel_names is not None else [str(i) for i in range(corr.shape[1])]
    rows, cols = linear_sum_assignment(-np.where(corr >= threshold, corr, 0.0))
    pairs = [(int(r), names[c], float(corr[r, c])) for r, c in zip(rows, cols) if corr[r, c] >= threshold]
    return {"count": len(pairs), "threshold": threshold, "pairs": pairs}
