"""Counterfactual quality: validity, L1/L0 distance, in-distribution measures (AE reconstruction error, yNN)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from .._validation import as_float_array, check_scalar, error_message


def _flat(name: str, X: Any) -> np.ndarray:
    X = as_float_array(name, X, ndim_min=1)
    return X.reshape(len(X), -1)


def _same_rows(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{nb}: expected the shape of {na} {a.shape}, got {b.shape}")


def validity(cf_class: Any, target: Any) -> float:
    """Fraction of counterfactuals whose predicted class equals the target."""
    a, b = np.asarray(cf_class).reshape(-1), np.asarray(target).reshape(-1)
    if len(a) != len(b):
        raise ValueError(f"target: expected {len(a)} labels (one per counterfactual), got {len(b)}")
    return float(np.mean(a == b)) if len(a) else float("nan")


def l1_distance(X: Any, X_cf: Any) -> np.ndarray:
    """Per-row L1 distance ``sum |x_cf - x|`` (features flattened)."""
    a, b = _flat("X", X), _flat("X_cf", X_cf)
    _same_rows(a, b, "X", "X_cf")
    return np.abs(b - a).sum(1)


def l0_distance(X: Any, X_cf: Any, tol: float = 1e-3) -> np.ndarray:
    """Per-row number of features changed by more than ``tol``."""
    check_scalar("tol", tol, low=0)
    a, b = _flat("X", X), _flat("X_cf", X_cf)
    _same_rows(a, b, "X", "X_cf")
    return (np.abs(b - a) > tol).sum(1)


def reconstruction_error(autoencoder: Callable | torch.nn.Module, X_cf: Any, batch_size: int = 1000) -> np.ndarray:
    """Per-row mean squared AE reconstruction error of counterfactuals (low = in-distribution)."""
    X = as_float_array("X_cf", X_cf, ndim_min=2)
    out = []
    for i in range(0, len(X), batch_size):
        xb = X[i:i + batch_size]
        if isinstance(autoencoder, torch.nn.Module):
            dev = next(autoencoder.parameters()).device
            was = autoencoder.training
            autoencoder.eval()
            with torch.no_grad():
                rec = autoencoder(torch.from_numpy(xb).to(dev)).cpu().numpy()
            autoencoder.train(was)
        else:
            rec = np.asarray(autoencoder(xb))
        if rec.shape != xb.shape:
            raise ValueError(error_message("autoencoder", f"to reconstruct inputs of shape {xb.shape[1:]}", rec))
        out.append(((rec - xb) ** 2).reshape(len(xb), -1).mean(1))
    return np.concatenate(out)


def ynn(X_cf: Any, cf_class: Any, X_ref: Any, y_ref: Any, k: int = 5, batch_size: int = 512) -> np.ndarray:
    """yNN: per counterfactual, the fraction of its ``k`` nearest reference points (Euclidean, features flattened)
    whose label equals the counterfactual's class (high = the counterfactual sits among points of its class)."""
    check_scalar("k", k, int, low=1)
    A, R = _flat("X_cf", X_cf), _flat("X_ref", X_ref)
    if A.shape[1] != R.shape[1]:
        raise ValueError(f"X_ref: expected {A.shape[1]} features per row (as X_cf), got {R.shape[1]}")
    y_ref = np.asarray(y_ref).reshape(-1)
    cls = np.asarray(cf_class).reshape(-1)
    if len(y_ref) != len(R):
        raise ValueError(f"y_ref: expected {len(R)} labels, got {len(y_ref)}")
    if len(cls) != len(A):
        raise ValueError(f"cf_class: expected {len(A)} labels, got {len(cls)}")
    if k > len(R):
        raise ValueError(f"k: expected at most the number of reference points ({len(R)}), got {k}")
    Rt = torch.from_numpy(R)
    rn = (Rt * Rt).sum(1)
    out = []
    for i in range(0, len(A), batch_size):
        a = torch.from_numpy(A[i:i + batch_size])
        d = (a * a).sum(1, keepdim=True) - 2 * a @ Rt.T + rn[None]   # [b, n_ref] squared distances
        nn_idx = d.topk(k, dim=1, largest=False).indices.numpy()
        out.append((y_ref[nn_idx] == cls[i:i + batch_size, None]).mean(1))
    return np.concatenate(out)


def counterfactual_report(X: Any, X_cf: Any, cf_class: Any, target: Any, *, autoencoder: Any = None,
                          X_ref: Any = None, y_ref: Any = None, k: int = 5) -> dict[str, float]:
    """The summary numbers of a batch of counterfactuals, as a JSON-ready dict."""
    rep = {"n": int(len(np.asarray(target).reshape(-1))), "validity": validity(cf_class, target),
           "l1_mean": float(l1_distance(X, X_cf).mean()), "l0_mean": float(l0_distance(X, X_cf).mean())}
    valid = np.asarray(cf_class).reshape(-1) == np.asarray(target).reshape(-1)
    rep["l1_mean_valid"] = float(l1_distance(X, X_cf)[valid].mean()) if valid.any() else float("nan")
    if autoencoder is not None:
        rep["ae_reconstruction_mse_mean"] = float(reconstruction_error(autoencoder, X_cf).mean())
    if X_ref is not None and y_ref is not None:
        rep[f"ynn_k{k}_mean"] = float(ynn(X_cf, cf_class, X_ref, y_ref, k=k).mean())
    return rep
