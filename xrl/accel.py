"""The one opt-in acceleration boundary: nothing else in xrl changes how a user's model runs.

``accelerate(module, "compile")`` returns a callable that runs ``torch.compile(module)`` once it has agreed with the
eager module on the first calls (``checks`` of them, within ``atol``; those calls return the eager answer). If
compiling fails or the answers differ, it warns once (:class:`AccelerationWarning`) and runs the module eagerly from
then on. ``accelerate(module, None)`` returns the module itself.

What changes with ``"compile"``: torch's compiler (inductor) generates and builds code on first use (it needs a C++
compiler on CPU and may start torch's own compile workers); later calls run that code, with float results that may
differ from eager in the last bits. Weights changed in place after compiling are read by the compiled code
(parameters are inputs of the graph), and data-dependent branches in ``forward`` become graph breaks run eagerly.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import torch

from ._validation import error_message

__all__ = ["accelerate", "Accelerated", "AccelerationWarning", "MODES"]

MODES = (None, "compile")


class AccelerationWarning(UserWarning):
    """An acceleration was asked for and could not be used: the eager model runs instead."""


class Accelerated:
    """``torch.compile`` of ``module``, checked against eager on its first ``checks`` calls (see the module doc).

    ``status`` says what runs: ``"checking"``, ``"compiled"`` or ``"eager (<reason>)"``.
    """

    def __init__(self, module: torch.nn.Module, name: str = "module", checks: int = 2, atol: float = 1e-5) -> None:
        self.module, self.name, self.checks, self.atol = module, name, checks, atol
        self.compiled: Callable | None = torch.compile(module)
        self.status = "checking"

    def _fall_back(self, reason: str) -> None:
        self.compiled, self.status = None, f"eager ({reason})"
        warnings.warn(f"{self.name}: accelerate='compile' is not used, the model runs eagerly: {reason}",
                      AccelerationWarning, stacklevel=3)

    def __call__(self, *args: Any) -> Any:
        if self.compiled is None:
            return self.module(*args)
        if self.checks <= 0:
            return self.compiled(*args)
        eager = self.module(*args)
        try:
            fast = self.compiled(*args)
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly
            self._fall_back(f"compiling failed ({type(exc).__name__}: {str(exc)[:200]})")
            return eager
        if not _close(fast, eager, self.atol):
            self._fall_back(f"its output differs from the eager model's by more than {self.atol}")
            return eager
        self.checks -= 1
        if self.checks == 0:
            self.status = "compiled"
        return eager


def _close(a: Any, b: Any, atol: float) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.allclose(a.float(), b.float(), rtol=0, atol=atol, equal_nan=True))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, atol) for x, y in zip(a, b))
    return False


def accelerate(module: Any, mode: str | None, name: str = "module") -> Callable:
    """``module`` itself (``mode=None``) or an :class:`Accelerated` wrapper (``mode="compile"``)."""
    if mode not in MODES:
        raise ValueError(error_message("accelerate", "None or 'compile'", mode))
    if mode is None:
        return module
    if not isinstance(module, torch.nn.Module):
        raise TypeError(error_message(name, "a torch.nn.Module for accelerate='compile'", type(module).__name__,
                                      "pass accelerate=None for other callables"))
    return Accelerated(module, name)
