"""The black box: the one boundary where CFRL calls the user's predictor (:class:`BlackBox`) and what it predicts
(:class:`Task`: classes or values, the actor's state layout, targets and rewards)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import accel
from .._utils import eval_mode
from .._validation import as_float_array, error_message
from .config import get_classification_reward


def check_float32_module(name: str, module: Any) -> None:
    """CFRL feeds float32 tensors: a module with parameters of another floating dtype gets a clear error here."""
    dtypes = {p.dtype for p in module.parameters() if p.is_floating_point()} - {torch.float32} \
        if isinstance(module, nn.Module) else set()
    if dtypes:
        raise TypeError(error_message(name, "a torch.nn.Module with float32 parameters (CFRL feeds it float32 "
                                      "tensors)", f"parameters of dtype {sorted(map(str, dtypes))}",
                                      f"convert it with {name}.float(), or pass a function that casts its input"))


class BlackBox:
    """The user's ``predictor``, called as :class:`~xrl.counterfactual.CounterfactualRL` documents. ``black_box(X)``
    returns a copy of its answer (a black box may reuse its output buffer) as float32 ``[N, K]`` on ``device``,
    checked; ``classes``: the column count it must have (set by ``fit``)."""

    def __init__(self, predictor: Callable, device: torch.device, accelerate: str | None = None) -> None:
        if not callable(predictor):
            raise TypeError(error_message("predictor", "a callable (numpy -> numpy) or a torch.nn.Module",
                                          type(predictor).__name__))
        check_float32_module("predictor", predictor)
        self.predictor, self.device, self.classes = predictor, device, None
        self.is_module = isinstance(predictor, nn.Module)
        self.call = accel.accelerate(predictor, accelerate, "predictor")  # a clear error for a function + a mode

    def __call__(self, X: Any) -> torch.Tensor:
        if self.is_module:
            x = X if isinstance(X, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(X))
            with torch.no_grad(), eval_mode(self.predictor):
                return self.check(self.call(x.to(device=self.device, dtype=torch.float32)), len(X))
        return self.check(self.predictor(X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X), len(X))

    def check(self, Y: Any, n: int) -> torch.Tensor:
        """The predictor's answer for ``n`` rows -> a float32 copy ``[n, K]`` on the device, or a clear error."""
        if isinstance(Y, tuple):
            raise TypeError(error_message(
                "predictor", "one array of predictions per call ([N, classes] or [N])", f"a tuple of {len(Y)}",
                "a model returning several outputs (such as (logits, value)) needs a wrapper returning the class "
                "scores only, e.g. an nn.Module whose forward returns model(x)[0]"))
        if isinstance(Y, torch.Tensor):
            Y = Y.detach().to(device=self.device, dtype=torch.float32, copy=True)
        else:
            try:  # pandas objects, lists, numpy: torch.tensor copies
                Y = torch.tensor(np.asarray(getattr(Y, "to_numpy", lambda: Y)(), dtype=np.float32), device=self.device)
            except (TypeError, ValueError) as exc:
                raise TypeError(error_message("predictor", "to return numeric predictions", type(Y).__name__)) from exc
        if Y.ndim == 0 or Y.shape[0] != n:
            raise ValueError(f"predictor: returned {Y.shape[0] if Y.ndim else 'a scalar'} row(s) for {n} input rows; "
                             "the predictor must return one prediction per row")
        Y = Y[:, None] if Y.ndim == 1 else Y
        if Y.ndim != 2 or not torch.isfinite(Y).all():
            raise ValueError(error_message("predictor", "finite predictions shaped [N, classes] or [N] (no NaN/inf)",
                                           Y, "check the black box on these inputs"))
        if self.classes is not None and Y.shape[1] != self.classes:
            raise ValueError(f"predictor: returns {Y.shape[1]} column(s) but the explainer was trained with a "
                             f"predictor of {self.classes}; reset_predictor needs a predictor of the same classes "
                             "(or fit a new explainer)")
        return Y


def to_numpy(x: Any) -> Any:
    """Tensors (and lists of them) -> numpy; numpy and None pass through."""
    if x is None or isinstance(x, np.ndarray):
        return x
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, (list, tuple)):
        return [to_numpy(e) for e in x]
    return np.asarray(x)


def call_user(f: Callable, *args: Any) -> Any:
    """Call one of alibi's user functions with numpy arrays (its contract)."""
    return f(*(to_numpy(a) for a in args))


def interval_reward(Y_pred: torch.Tensor, Y_target: torch.Tensor) -> torch.Tensor:
    """Regression reward: 1 where ``low <= y_pred <= high`` for targets ``[N, 2]`` (low, high)."""
    y = Y_pred.reshape(-1)
    return ((y >= Y_target[:, 0]) & (y <= Y_target[:, 1])).float()


@dataclasses.dataclass
class Task:
    """``y_dim`` classes, or one value (``regression``; targets are values, or ``[low, high]`` intervals when
    ``intervals``: regression only). ``y_range`` is the training predictions' range for regression."""

    y_dim: int
    regression: bool
    y_range: tuple[float, float] | None = None
    intervals: bool = False

    @classmethod
    def from_predictions(cls, Y: torch.Tensor, intervals: bool = False) -> "Task":
        """The task of a black box whose training-set predictions are ``Y`` ``[N, K]`` (``K == 1``: regression)."""
        if Y.shape[1] == 1:
            return cls(1, True, (float(Y.min()), float(Y.max())), intervals)
        return cls(int(Y.shape[1]), False)

    @property
    def target_dim(self) -> int:
        return 2 if self.regression and self.intervals else self.y_dim

    def labels(self, Y: torch.Tensor) -> torch.Tensor:
        """Predictions -> the actor's label encoding: one-hot (classification) or the value (regression)."""
        return Y.reshape(-1, 1) if self.regression else F.one_hot(Y.argmax(1), self.y_dim).to(Y.dtype)

    def state(self, Z: torch.Tensor, Y_m: torch.Tensor, Y_t: torch.Tensor, C: torch.Tensor | None) -> torch.Tensor:
        """The actor's input ``[Z, Y_m, Y_t, C]``; regression values enter scaled to ``[-1, 1]`` like the latent."""
        if self.regression:
            lo, hi = self.y_range
            scale = 2.0 / max(hi - lo, 1e-8)
            Y_m, Y_t = (Y_m - lo) * scale - 1, (Y_t - lo) * scale - 1
        return torch.cat([Z, Y_m, Y_t] + ([C.to(Z.dtype)] if C is not None else []), dim=1)

    def sample_targets(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """Training targets: uniform classes (one-hot), uniform values in ``y_range``, or intervals around them."""
        if not self.regression:
            return F.one_hot(torch.randint(0, self.y_dim, (n,), device=device, generator=generator), self.y_dim).float()
        lo, hi = self.y_range
        center = lo + (hi - lo) * torch.rand(n, 1, device=device, generator=generator)
        if not self.intervals:
            return center
        half = (hi - lo) * (0.025 + 0.125 * torch.rand(n, 1, device=device, generator=generator))
        return torch.cat([center - half, center + half], 1)

    def reward(self, reward_func: Callable, Y_pred: torch.Tensor, Y_t: torch.Tensor) -> torch.Tensor:
        """Element-wise reward ``[N]`` (float) of predictions ``Y_pred`` for targets ``Y_t``."""
        if reward_func is get_classification_reward:  # classes reached, or predictions inside target intervals
            if self.regression and not self.intervals:
                raise ValueError("reward_func: the predictor returns one value per row (regression), so the default "
                                 "classification reward does not apply; pass reward_func(Y_pred, Y_target) -> [N]")
            return self.valid(Y_pred, Y_t).float()
        R = call_user(reward_func, Y_pred, Y_t)
        R = torch.as_tensor(np.asarray(R, np.float32) if not isinstance(R, torch.Tensor) else R, device=Y_pred.device)
        if R.numel() != len(Y_pred):
            raise ValueError(error_message("reward_func", f"one reward per row ({len(Y_pred)})", R))
        return R.float().reshape(-1)

    def valid(self, Y_cf: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        """Whether each counterfactual's prediction meets its target (intervals: inside; classes: argmax)."""
        if self.regression:
            return interval_reward(Y_cf, T).bool() if self.intervals else torch.ones(len(Y_cf), dtype=torch.bool)
        return Y_cf.argmax(1) == T.argmax(1)

    def targets(self, Y_t: Any, n: int, device: torch.device) -> torch.Tensor:
        """Explain-time targets -> ``[n, target_dim]`` float32; one target is broadcast to all rows."""
        if Y_t is None:
            raise ValueError("Y_t: expected target classes (or values/intervals for regression), got None")
        T = as_float_array("Y_t", to_numpy(Y_t), ndim_min=0).astype(np.float64)  # numeric and finite
        T = T.reshape(1, -1) if T.ndim == 0 or (self.intervals and T.shape == (2,)) else T
        out = torch.as_tensor(self._encode_targets(T), dtype=torch.float32, device=device)
        if out.shape[0] not in (1, n):
            raise ValueError(f"Y_t: expected 1 target (broadcast to every row) or one per row ({n}), got {len(out)}")
        return out.expand(n, -1)

    def _encode_targets(self, T: np.ndarray) -> np.ndarray:
        width = T.shape[1] if T.ndim == 2 else 1
        if self.regression:
            if T.ndim > 2 or width != self.target_dim or (self.intervals and (T[:, 0] > T[:, 1]).any()):
                raise ValueError(error_message("Y_t", "target intervals [[low, high]] with low <= high, shaped [1, 2] "
                                               "or [N, 2]" if self.intervals else "one target value per row for a "
                                               "regression predictor", T))
            return T.reshape(-1, self.target_dim)
        if T.ndim > 2 or (width > 1 and width != self.y_dim):
            raise ValueError(error_message("Y_t", f"class labels [N] or one-hot rows [N, {self.y_dim}]", T,
                                           f"one-hot targets have {width} columns but the predictor has {self.y_dim} "
                                           "classes"))
        if width > 1:
            ties = (T == T.max(1, keepdims=True)).sum(1) != 1
            if ties.any():
                row = int(np.flatnonzero(ties)[0])
                raise ValueError(error_message("Y_t", "one-hot rows (one largest entry per row)", T[row].tolist(),
                                               f"row {row} has no single class; an all-zero row names no target"))
            return np.eye(self.y_dim)[T.argmax(1)]
        flat = T.reshape(-1)
        if not np.all(np.mod(flat, 1) == 0) or flat.min() < 0 or flat.max() >= self.y_dim:
            raise ValueError(error_message("Y_t", f"integer class labels in [0, {self.y_dim - 1}]", flat.tolist()))
        return np.eye(self.y_dim)[flat.astype(np.int64)]
