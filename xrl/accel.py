"""The one acceleration boundary: nothing else in xrl changes how a model runs.

``accelerate(module, mode)`` runs ``module`` on a fast path once that path has agreed with the eager module on its
first ``checks`` calls (within ``atol``; those calls return the eager answer); if it fails or disagrees, it warns once
(:class:`AccelerationWarning`) and runs eagerly from then on. ``"channels_last"``: each call runs with the 4-D weights
and inputs in channels-last memory format, nothing compiled or kept (in-place weight changes, hooks and data-dependent
branches act as in eager mode). ``"compile"``: ``torch.compile`` (inductor needs a C++ compiler on CPU and may start
torch's compile workers). Both may differ from eager in a float's last bits.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from ._validation import error_message

__all__ = ["accelerate", "Accelerated", "AccelerationWarning", "MODES", "channels_last"]

MODES = (None, "channels_last", "compile")


class AccelerationWarning(UserWarning):
    """An acceleration was asked for and could not be used: the eager model runs instead."""


@contextmanager
def channels_last(*modules: torch.nn.Module) -> Iterator[None]:
    """Inside: the 4-D floating weights of ``modules`` in channels-last memory format; on exit (also after an error)
    each parameter gets back the very tensor it had."""
    saved = [(p, p.data) for m in modules for p in m.parameters() if p.dim() == 4 and p.is_floating_point()]
    try:
        for p, data in saved:  # .to restrides one-channel tensors too, which oneDNN then also runs in NHWC
            p.data = data.to(memory_format=torch.channels_last)
        yield
    finally:
        for p, data in saved:
            p.data = data


class Accelerated:
    """``module`` on a fast path, checked against eager on its first ``checks`` calls (see the module doc);
    ``status`` says what runs: ``"checking"``, ``"accelerated"`` or ``"eager (<reason>)"``."""

    def __init__(self, module: torch.nn.Module, mode: str, name: str = "module", checks: int = 2,
                 atol: float = 1e-5) -> None:
        self.module, self.name, self.checks, self.atol, self.status = module, name, checks, atol, "checking"
        self.fast: Callable | None = torch.compile(module) if mode == "compile" else self._channels_last

    def _channels_last(self, *args: Any) -> Any:
        with channels_last(self.module):  # 4-D inputs too: the same values, NHWC strides
            return self.module(*(a.to(memory_format=torch.channels_last) if isinstance(a, torch.Tensor)
                                 and a.dim() == 4 else a for a in args))

    def _fall_back(self, reason: str) -> None:
        self.fast, self.status = None, f"eager ({reason})"
        warnings.warn(f"{self.name}: the accelerated path is not used, the model runs eagerly: {reason}",
                      AccelerationWarning, stacklevel=3)

    def __call__(self, *args: Any) -> Any:
        if self.fast is None:
            return self.module(*args)
        if self.checks <= 0:
            return self.fast(*args)
        eager = self.module(*args)
        try:
            fast = self.fast(*args)
        except Exception as exc:  # noqa: BLE001 - any failure of the fast path means: run eagerly
            self._fall_back(f"it failed ({type(exc).__name__}: {str(exc)[:200]})")
            return eager
        if not _close(fast, eager, self.atol):
            self._fall_back(f"its output differs from the eager model's by more than {self.atol}")
            return eager
        self.checks -= 1
        self.status = "checking" if self.checks else "accelerated"
        return eager


def _close(a: Any, b: Any, atol: float) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, atol) for x, y in zip(a, b))
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and bool(torch.allclose(a.float(), b.float(), rtol=0, atol=atol, equal_nan=True)))


def accelerate(module: Any, mode: str | None, name: str = "module") -> Callable:
    """``module`` itself (``mode=None``, or ``"channels_last"`` for a module without convolutions) or an
    :class:`Accelerated` wrapper."""
    if mode not in MODES:
        raise ValueError(error_message("accelerate", f"one of {MODES}", mode))
    if mode is not None and not isinstance(module, torch.nn.Module):
        raise TypeError(error_message(name, f"a torch.nn.Module for accelerate={mode!r}", type(module).__name__,
                                      "pass accelerate=None for other callables"))
    if mode is None or (mode == "channels_last" and not any(p.dim() == 4 for p in module.parameters())):
        return module
    return Accelerated(module, mode, name)
