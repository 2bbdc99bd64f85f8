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
    with pytest.raises(ValueError, match="accelerate: expected one of \\(None, 'channels_last', 'compile'\\), got 'jit'"):
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
    with pytest.warns(AccelerationWarning, match="predictor: the accelerated path is not used"):
        out = fast(x)
    torch.testing.assert_close(out, m(x), rtol=0, atol=0)
    assert fast.status.startswith("eager (") and fast.fast is None
    torch.testing.assert_close(fast(x), m(x), rtol=0, atol=0)  # eager from then on, no second warning


def test_checked_calls_return_the_eager_answer_then_the_compiled_one(monkeypatch):
    m, x, calls = mlp(), torch.randn(5, 6), []

    def fake_compile(module):
        def compiled(inp):
            calls.append(len(inp))
            return module(inp)
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    fast = accel.Accelerated(m, "compile", checks=2)
    for _ in range(3):
        torch.testing.assert_close(fast(x), m(x))
    assert fast.status == "accelerated" and calls == [5, 5, 5]


@pytest.mark.slow
def test_torch_compile_of_a_small_module_agrees_with_eager():
    m, x = mlp(), torch.randn(7, 6)
    fast = accelerate(m, "compile")
    with torch.no_grad():
        outs = [fast(x) for _ in range(3)]
        ref = m(x)
    if fast.status.startswith("eager"):
        pytest.skip(f"torch.compile unavailable here: {fast.status}")
    assert fast.status == "accelerated"
    for out in outs:
        np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-5)


class Convs(nn.Module):
    """Two convolutions; ``forward`` branches on the data and ``seen`` records its weights' memory format."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)
        self.seen = []

    def forward(self, x):
        h = torch.relu(self.c1(x))
        self.seen.append(self.c2.weight.is_contiguous(memory_format=torch.channels_last))
        return self.c2(h) if bool(h.mean() > 0) else -self.c2(h)


def test_channels_last_agrees_with_eager_and_gives_every_parameter_its_own_tensor_back():
    m, x = Convs().eval(), torch.rand(6, 1, 9, 9)
    before = {name: p.data_ptr() for name, p in m.named_parameters()}
    fast = accelerate(m, "channels_last", "decoder")
    with torch.no_grad():
        ref = m(x)
        outs = [fast(x) for _ in range(3)]
    assert fast.status == "accelerated" and m.seen[-1] and not m.seen[0]  # the last call ran with NHWC weights
    for out in outs:
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    for name, p in m.named_parameters():
        assert p.data_ptr() == before[name] and p.is_contiguous()  # the same memory, not a copy
    with torch.no_grad():  # weights changed in place after the checks are used by the next call
        m.c2.weight.mul_(2.0)
        torch.testing.assert_close(fast(x), m(x), rtol=0, atol=1e-5)
    with pytest.raises(ZeroDivisionError), accel.channels_last(m):  # restored after an error too
        raise ZeroDivisionError
    assert all(p.data_ptr() == before[name] for name, p in m.named_parameters())
    assert accelerate(mlp(), "channels_last").__class__ is nn.Sequential  # nothing to do without convolutions
