"""Parameter checks with one error-message template, shared by every capability.

Every user error names the parameter, the value received, what is accepted and, where useful, a remedy:
``ValueError("X: expected ..., got ...; <remedy>")``.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable, Sequence

import numpy as np
import torch


def _fmt(value: Any) -> str:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def error_message(name: str, expected: str, got: Any, remedy: str | None = None) -> str:
    """The one message template: ``"<name>: expected <expected>, got <got>[; <remedy>]"``."""
    msg = f"{name}: expected {expected}, got {_fmt(got)}"
    return f"{msg}; {remedy}" if remedy else msg


def check_type(name: str, value: Any, types: type | tuple[type, ...], expected: str | None = None) -> None:
    if not isinstance(value, types):
        names = expected or " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise TypeError(error_message(name, names, type(value).__name__))


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def check_scalar(name: str, value: Any, kind: type | tuple[type, ...] = (int, float), *, low: float | None = None,
                 high: float | None = None, low_inclusive: bool = True, high_inclusive: bool = True) -> None:
    """Check a number's type and range; bools are not numbers here. numpy integers count as ``int`` and numpy
    floating-point numbers as ``float`` (values read from arrays are numpy scalars)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    accepted = kinds + ((np.integer,) if int in kinds else ()) + ((np.floating,) if float in kinds else ())
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, accepted):
        raise TypeError(error_message(name, " or ".join(_article(k.__name__) for k in kinds), value))
    if not np.isfinite(value):
        raise ValueError(error_message(name, "a finite number", value))
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ValueError(error_message(name, f"a value {'>=' if low_inclusive else '>'} {low}", value))
    if high is not None and (value > high or (value == high and not high_inclusive)):
        raise ValueError(error_message(name, f"a value {'<=' if high_inclusive else '<'} {high}", value))


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ValueError(error_message(name, "one of " + ", ".join(map(repr, choices)), value))


def check_finite(name: str, x: np.ndarray | torch.Tensor) -> None:
    """Raise if an array or tensor holds NaN or inf (with the count of bad entries)."""
    if isinstance(x, torch.Tensor):
        bad = int((~torch.isfinite(x)).sum()) if x.is_floating_point() else 0
    else:
        x = np.asarray(x)
        bad = int((~np.isfinite(x)).sum()) if np.issubdtype(x.dtype, np.floating) else 0
    if bad:
        raise ValueError(f"{name}: expected finite values, got {bad} NaN/inf entries in {_fmt(x)}; "
                         "clean or impute the data first")


def as_float_array(name: str, x: Any, *, ndim_min: int = 1, finite: bool = True) -> np.ndarray:
    """Convert array-likes to float32 numpy, rejecting strings/objects, too few dims and NaN/inf."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(error_message(name, "a numeric array", type(x).__name__)) from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(error_message(name, "a numeric array (float, int or bool)", arr))
    if arr.ndim < ndim_min:
        raise ValueError(error_message(name, f"an array with at least {ndim_min} dimension(s)", arr))
    arr = arr.astype(np.float32, copy=False)
    if finite:
        check_finite(name, arr)
    return arr


def suggest(name: str, choices: Sequence[str], n: int = 3) -> str:
    """A 'did you mean' fragment for unknown names ('' when nothing is close)."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.4)
    return ("did you mean " + ", ".join(map(repr, close)) + "?") if close else ""


def check_is_fitted(estimator: Any, attribute: str, what: str = "fit") -> None:
    if getattr(estimator, attribute, None) is None:
        raise RuntimeError(f"{type(estimator).__name__} is not fitted yet: call {what}(...) first")


def check_keys(name: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Reject unknown keyword names (with a suggestion) instead of silently ignoring them."""
    allowed = list(allowed)
    unknown = [k for k in given if k not in allowed]
    if unknown:
        hints = [f"{k!r} ({suggest(k, allowed)})" if suggest(k, allowed) else repr(k) for k in unknown]
        raise ValueError(f"{name}: unknown key(s) {', '.join(hints)}; accepted keys are {', '.join(sorted(allowed))}")
