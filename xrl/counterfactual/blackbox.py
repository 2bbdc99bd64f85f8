"""The one boundary where CFRL meets the user's predictor.

The predictor is called exactly as given, from the caller's thread: a ``torch.nn.Module`` with float32 tensors on the
explainer's device (in eval mode, without gradients; every submodule's own mode comes back), any other callable with
numpy arrays. Its answer is copied at once (a black box may hand out a view of a buffer it reuses), checked, and
becomes a float32 tensor ``[N, K]`` on the device. Acceleration only when asked for, through :mod:`xrl.accel`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from .. import accel
from .._utils import eval_mode
from .._validation import error_message

__all__ = ["BlackBox", "check_float32_module"]


def check_float32_module(name: str, module: Any) -> None:
    """CFRL feeds float32 tensors: a module with parameters of another floating dtype gets a clear error here."""
    dtypes = {p.dtype for p in module.parameters() if p.is_floating_point()} - {torch.float32} \
        if isinstance(module, nn.Module) else set()
    if dtypes:
        raise TypeError(error_message(name, "a torch.nn.Module with float32 parameters (CFRL feeds it float32 "
                                      "tensors)", f"parameters of dtype {sorted(map(str, dtypes))}",
                                      f"convert it with {name}.float(), or pass a function that casts its input"))


class BlackBox:
    """The user's ``predictor`` behind the boundary; ``black_box(X)`` returns its predictions ``[N, K]`` (float32
    tensor on ``device``, a copy). ``classes``: the column count they must have (set by ``fit``)."""

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
