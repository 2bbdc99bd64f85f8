"""The optimized inference copy must equal the eager module, follow weight changes, and fall back when unsafe."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from xrl import _kernels
from xrl._inference import ChannelsLastCall, InferenceModule
from xrl.models import MNISTClassifier, MNISTDecoder


def test_matches_eager_for_every_batch_size():
    torch.manual_seed(0)
    clf = MNISTClassifier(10)
    fast = InferenceModule(clf)
    for n in (50, 7, 50, 1):
        x = torch.rand(n, 1, 28, 28)
        with torch.no_grad():
            ref = clf.eval()(x)
        out = fast(x)
        assert out.shape == (n, 10) and not out.requires_grad
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    # xrl._rewrite swapped both ReLU/pool pairs, then (compiled kernels available) fused each conv + pool + ReLU
    fused = ", fuse_conv_pool x2" if _kernels.available() else ""
    assert fast.status == "optimized, rewritten: pool_before_relu x2" + fused


def test_concurrent_calls_from_threads_give_eval_mode_outputs():
    # pipelined CFRL may call the predictor from a worker while a callback calls it here: the train/eval toggle of
    # one call must not leak into the other (dropout on would change the outputs)
    torch.manual_seed(2)
    clf = MNISTClassifier(10).train()
    fast = InferenceModule(clf)
    xs = [torch.rand(n, 1, 28, 28) for n in (30, 17) * 8]
    with torch.no_grad():
        refs = [clf.eval()(x) for x in xs]
    clf.train()
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(fast, xs))
    for out, ref in zip(outs, refs):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert clf.training


def test_keeps_training_mode_and_follows_weight_changes():
    torch.manual_seed(1)
    dec = MNISTDecoder(8).train()
    fast = InferenceModule(dec)
    z = torch.rand(20, 8)
    before = fast(z)
    assert dec.training  # restored after the call
    with torch.no_grad():
        dec.fc1.weight.mul_(-2.0)  # an in-place edit bumps the version counter -> rebuilt, never stale
    after = fast(z)
    with torch.no_grad():
        ref = dec.eval()(z)
    torch.testing.assert_close(after, ref, rtol=1e-4, atol=1e-5)
    assert (after - before).abs().max() > 1e-3


class BatchSizeBranch(nn.Module):
    """A forward whose Python branch depends on the batch size: tracing would bake one branch in."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * (2.0 if x.shape[0] > 10 else -1.0)


def test_unsafe_trace_falls_back_to_eager():
    torch.manual_seed(2)
    m = BatchSizeBranch()
    fast = InferenceModule(m)
    for n in (32, 3, 32):
        x = torch.rand(n, 4)
        with torch.no_grad():
            torch.testing.assert_close(fast(x), m(x))
    assert fast.status.startswith("eager (the traced module disagreed")


def test_disabled_and_non_tensor_inputs_run_eager():
    m = nn.Linear(4, 2)
    fast = InferenceModule(m, enabled=False)
    x = torch.rand(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), m(x))
    assert fast.status == "eager (disabled)"
    assert np.isfinite(InferenceModule(nn.Identity())(torch.zeros(0, 3)).numpy()).all()


def test_channels_last_call_gives_eager_values_and_input_gradients():
    torch.manual_seed(2)
    dec = MNISTDecoder(8).eval()
    for p in dec.parameters():
        p.requires_grad_(False)  # frozen, as in the actor update
    call = ChannelsLastCall(dec)
    z = torch.rand(16, 8, requires_grad=True)
    out = call(z)
    (g,) = torch.autograd.grad(out.square().sum(), z)
    z_ref = z.detach().clone().requires_grad_(True)
    ref = dec(z_ref)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), z_ref)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)
    assert all(p.is_contiguous() for p in dec.parameters())  # the module itself is left as it was
    with torch.no_grad():
        dec.conv4.weight.mul_(-1.0)  # an edit is seen at the next call
    torch.testing.assert_close(call(z.detach()), dec(z.detach()), rtol=1e-5, atol=1e-6)
    lin = nn.Linear(3, 2)
    assert torch.equal(ChannelsLastCall(lin)(torch.ones(1, 3)), lin(torch.ones(1, 3)))  # no conv: called as is


def test_upsampling_decoder_runs_channels_last_not_traced():
    torch.manual_seed(3)
    dec = MNISTDecoder(8)
    fast = InferenceModule(dec)
    z = torch.rand(30, 8)
    out = fast(z)
    assert fast.status == "channels-last eager, rewritten: fold_upsample_into_conv x3"
    with torch.no_grad():
        torch.testing.assert_close(out, dec.eval()(z), rtol=1e-5, atol=1e-6)


def test_channels_last_call_is_safe_from_threads():
    torch.manual_seed(4)
    dec = MNISTDecoder(8).eval()
    call = ChannelsLastCall(dec)
    zs = [torch.rand(n, 8) for n in (12, 5) * 8]
    with torch.no_grad():
        refs = [dec(z) for z in zs]
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(call, zs))
    for out, ref in zip(outs, refs):
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert call.rewrites == {"fold_upsample_into_conv": 3}
    assert all(p.is_contiguous() for p in dec.parameters())


class Noisy(nn.Module):
    """Not a function of its input: the private copy cannot match it, so the module itself must run."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + torch.rand(1)


def test_channels_last_call_runs_the_module_when_its_copy_disagrees():
    m = Noisy().eval()
    call = ChannelsLastCall(m)
    x = torch.rand(3, 1, 6, 6)
    call(x)
    assert not call.enabled
    torch.manual_seed(5)
    out = call(x)
    torch.manual_seed(5)
    assert torch.equal(out, m(x))


def test_channels_last_call_runs_the_module_after_a_layer_is_replaced():
    torch.manual_seed(6)
    dec = MNISTDecoder(8).eval()
    call = ChannelsLastCall(dec)
    z = torch.rand(4, 8)
    with torch.no_grad():
        torch.testing.assert_close(call(z), dec(z), rtol=1e-5, atol=1e-6)
        dec.conv4 = nn.Conv2d(16, 1, 5, padding=2)  # a new layer of another shape: the private copy no longer fits
        torch.testing.assert_close(call(z), dec(z))
    assert not call.enabled
