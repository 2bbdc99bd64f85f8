"""Counterfactual metrics for mixed tabular data (original-space codes, see :mod:`xrl.preprocessing`).

All functions take numpy arrays or tensors of *codes* ``[N, F]`` (numbers as they are, categorical cells as integer
codes) plus the column indices they need, so they work for any data set; :func:`tabular_cf_metrics` bundles them for a
fitted :class:`~xrl.preprocessing.TabularPreprocessor`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .._validation import error_message
from .counterfactual import ynn

__all__ = ["tabular_validity", "categorical_sparsity", "numerical_sparsity", "immutability_violations",
           "range_violations", "mean_pairwise_distance", "count_diversity", "tabular_cf_metrics"]


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _same_shape(X: np.ndarray, X_cf: np.ndarray) -> None:
    if X.shape != X_cf.shape or X.ndim != 2:
        raise ValueError(error_message("X_cf", f"a 2-D array shaped like X {X.shape}", X_cf))


def tabular_validity(y_cf: Any, y_target: Any) -> float:
    """Fraction of counterfactuals reaching the target.

    Classification: ``y_cf`` and ``y_target`` are labels ``[N]``. Regression: ``y_target`` is ``[N, 2]`` intervals
    ``[low, high]`` and ``y_cf`` ``[N]`` predictions."""
    y_cf, y_target = _np(y_cf), _np(y_target)
    if y_target.ndim == 2 and y_target.shape[1] == 2 and y_cf.ndim == 1:
        return float(((y_cf >= y_target[:, 0]) & (y_cf <= y_target[:, 1])).mean())
    return float((y_cf.reshape(-1) == y_target.reshape(-1)).mean())


def categorical_sparsity(X: Any, X_cf: Any, cat_idx: Sequence[int]) -> float:
    """Mean fraction of categorical features changed per counterfactual (0: none changed)."""
    X, X_cf = _np(X), _np(X_cf)
    _same_shape(X, X_cf)
    if not len(cat_idx):
        return 0.0
    return float((X[:, cat_idx] != X_cf[:, cat_idx]).mean())


def numerical_sparsity(X: Any, X_cf: Any, num_idx: Sequence[int], std: Any) -> float:
    """Mean over rows and numerical features of ``|x_cf - x| / std`` (std of the training data)."""
    X, X_cf = _np(X).astype(np.float64), _np(X_cf).astype(np.float64)
    _same_shape(X, X_cf)
    if not len(num_idx):
        return 0.0
    return float((np.abs(X_cf[:, num_idx] - X[:, num_idx]) / _np(std)).mean())


def immutability_violations(X: Any, X_cf: Any, immutable_idx: Sequence[int]) -> int:
    """Rows where any immutable feature changed (must be 0)."""
    X, X_cf = _np(X), _np(X_cf)
    _same_shape(X, X_cf)
    if not len(immutable_idx):
        return 0
    return int((X[:, immutable_idx] != X_cf[:, immutable_idx]).any(1).sum())


def range_violations(X: Any, X_cf: Any, feature_idx: int, low: float = -np.inf, high: float = np.inf) -> int:
    """Rows whose change ``x_cf - x`` of one feature leaves ``[low, high]`` (e.g. ``low=0``: may only increase)."""
    X, X_cf = _np(X).astype(np.float64), _np(X_cf).astype(np.float64)
    _same_shape(X, X_cf)
    delta = X_cf[:, feature_idx] - X[:, feature_idx]
    return int(((delta < low) | (delta > high)).sum())


def mean_pairwise_distance(Z: Any) -> float:
    """Mean Euclidean distance between distinct pairs of counterfactuals of one instance (model space)."""
    Z = torch.as_tensor(_np(Z), dtype=torch.float64)
    n = len(Z)
    if n < 2:
        return 0.0
    d = torch.cdist(Z, Z)
    return float(d.sum() / (n * (n - 1)))


def count_diversity(X_cf: Any) -> float:
    """Count diversity (DiCE): fraction of features that differ, averaged over distinct pairs of counterfactuals."""
    X = _np(X_cf)
    n = len(X)
    if n < 2:
        return 0.0
    diff = (X[:, None, :] != X[None, :, :]).mean(-1)  # [n, n]
    return float(diff.sum() / (n * (n - 1)))


def tabular_cf_metrics(pre: Any, X: Any, X_cf: Any, y_cf: Any, y_target: Any,
                       immutable_features: Sequence[str] = (), increase_only: Sequence[str] = (),
                       decrease_only: Sequence[str] = (), Z_train: Any = None, y_train: Any = None,
                       k: int = 5) -> dict[str, float]:
    """All metrics of a batch of counterfactuals, for a fitted :class:`~xrl.preprocessing.TabularPreprocessor`.

    ``X``/``X_cf`` are in original format (array or DataFrame) or codes; ``y_cf`` the black box's labels of the
    counterfactuals; ``y_target`` labels (or intervals for regression). yNN (:func:`xrl.metrics.ynn`, in model
    space, against the counterfactuals' classes) needs ``Z_train`` and ``y_train`` (black-box labels)."""
    A = pre.to_codes(X) if not (isinstance(X, np.ndarray) and X.dtype == np.float64 and X.ndim == 2) else X
    A_cf = pre.to_codes(X_cf) if not (isinstance(X_cf, np.ndarray) and X_cf.dtype == np.float64) else X_cf
    names = pre.feature_names_
    out = {
        "n": int(len(A)),
        "validity": tabular_validity(y_cf, y_target),
        "categorical_sparsity": categorical_sparsity(A, A_cf, pre.cat_idx_),
        "categorical_changed_mean": float((A[:, pre.cat_idx_] != A_cf[:, pre.cat_idx_]).sum(1).mean())
        if pre.cat_idx_ else 0.0,
        "numerical_sparsity": numerical_sparsity(A, A_cf, pre.num_idx_, pre.std_),
        "numerical_l1_std_sum_mean": float((np.abs(A_cf[:, pre.num_idx_] - A[:, pre.num_idx_]) / pre.std_)
                                           .sum(1).mean()) if pre.num_idx_ else 0.0,
        "immutability_violations": immutability_violations(A, A_cf, [names.index(f) for f in immutable_features]),
        "range_violations": sum(range_violations(A, A_cf, names.index(f), low=0.0) for f in increase_only)
        + sum(range_violations(A, A_cf, names.index(f), high=0.0) for f in decrease_only),
        "unchanged_rows": int((A == A_cf).all(1).sum()),
    }
    if Z_train is not None and y_train is not None:
        y_t = _np(y_target)
        if y_t.ndim == 1:
            Zc = pre.codes_to_model(torch.from_numpy(A_cf)).numpy()
            out[f"ynn_{k}"] = float(ynn(Zc, _np(y_cf), _np(Z_train), y_train, k=k).mean())
    return out
