"""xrl.accel: the one opt-in acceleration boundary (torch.compile, checked against eager, falling back with a warning)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xrl import accel
from xrl.accel import AccelerationWarning, accelerate


def mlp() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


def test_none_is_the_module_itself_and_bad_modes_are_refused():
    m = mlp()
    assert accelerate(m, None) is m
    with pytest.raises(ValueError, match="accelerate: expected None or 'compile', got 'jit'"):
        accelerate(m, "jit")
    with pytest.raises(TypeError, match="predictor: expected a torch.nn.Module for accelerate='compile'"):
        accelerate(lambda x: x, "compile", "predictor")


@pytest.mark.parametrize("failure", ["raises", "differs"])
def test_a_failing_or_disagreeing_compile_falls_back_to_eager_with_a_warning(failure, monkeypatch):
    m, x = mlp(), torch.randn(5, 6)

    def fake_compile(module):
        def compiled(inp):
            if failure == "raises":
                raise RuntimeError("no C++ compiler")
            return module(inp) + 1e-3
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    fast = accelerate(m, "compile", "predictor")
    with pytest.warns(AccelerationWarning, match="predictor: accelerate='compile' is not used"):
        out = fast(x)
    torch.testing.assert_close(out, m(x), rtol=0, atol=0)
    assert fast.status.startswith("eager (") and fast.compiled is None
    torch.testing.assert_close(fast(x), m(x), rtol=0, atol=0)  # eager from then on, no second warning


def test_checked_calls_return_the_eager_answer_then_the_compiled_one(monkeypatch):
    m, x, calls = mlp(), torch.randn(5, 6), []

    def fake_compile(module):
        def compiled(inp):
            calls.append(len(inp))
            return module(inp)
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    fast = accel.Accelerated(m, checks=2)
    for _ in range(3):
        torch.testing.assert_close(fast(x), m(x))
    assert fast.status == "compiled" and calls == [5, 5, 5]


@pytest.mark.slow
def test_torch_compile_of_a_small_module_agrees_with_eager():
    m, x = mlp(), torch.randn(7, 6)
    fast = accelerate(m, "compile")
    with torch.no_grad():
        outs = [fast(x) for _ in range(3)]
        ref = m(x)
    if fast.status.startswith("eager"):
        pytest.skip(f"torch.compile unavailable here: {fast.status}")
    assert fast.status == "compiled"
    for out in outs:
        np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-5)
