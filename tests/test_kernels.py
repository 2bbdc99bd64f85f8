"""The compiled conv + max-pool kernel: same function as torch's ops on every geometry it accepts, the graph rewrite
that uses it, and the fallbacks when it cannot be built."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xrl import _kernels
from xrl._inference import InferenceModule
from xrl._rewrite import ConvPool2d, rewrite_for_inference

needs_kernels = pytest.mark.skipif(not _kernels.available(), reason=f"xrl._kernels: {_kernels.status}")


def _fused(x: torch.Tensor, conv: nn.Conv2d, pool: int, relu: bool) -> torch.Tensor:
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    return _kernels.conv_pool2d(x, _kernels.pack_weight(conv.weight), bias.detach(), *conv.kernel_size, *conv.padding,
                                pool, relu)


@needs_kernels
@pytest.mark.parametrize("cin,cout,kernel,padding,size,pool,relu", [
    (1, 64, 2, 1, (28, 28), 2, True),      # seed 000's classifier, first block
    (64, 32, 2, 1, (14, 14), 2, True),     # ... second block
    (1, 16, 3, 1, (28, 28), 2, False),     # seed 000's encoder
    (8, 8, 3, 2, (7, 7), 2, True),         # padding wider than the kernel's reach; floor drops the last row
    (3, 24, (3, 1), (1, 0), (11, 9), 3, True),  # rectangular kernel, 24 = 16 + 8 channels, pool 3
    (5, 40, 5, 0, (13, 17), 2, False),     # no padding, odd sizes
    (2, 8, 1, 0, (6, 5), 2, True),         # 1x1 convolution
    (4, 16, 4, 3, (3, 3), 4, True),        # padding larger than the image
])
def test_conv_pool2d_equals_torch(cin, cout, kernel, padding, size, pool, relu):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, kernel, padding=padding)
    for n in (1, 7):
        x = torch.randn(n, cin, *size)
        with torch.no_grad():
            ref = _kernels.reference(x, conv.weight, conv.bias, conv.padding, pool, relu)
            out = _fused(x, conv, pool, relu)
            out_cl = _fused(x.contiguous(memory_format=torch.channels_last), conv, pool, relu)
        assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last)
        assert (out - ref).abs().max().item() < 1e-5
        assert torch.equal(out, out_cl)
        if relu:
            assert out.min().item() >= 0


@needs_kernels
def test_conv_pool2d_same_bits_on_any_thread_count_and_empty_outputs():
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    x = torch.randn(9, 8, 10, 10)
    threads = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            with torch.no_grad():
                outs.append(_fused(x, conv, 2, True))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    with torch.no_grad():
        assert _fused(x[:0], conv, 2, True).shape == (0, 16, 5, 5)
        assert _fused(x[:, :, :1, :1], conv, 2, True).shape == (9, 16, 0, 0)  # the pooling window never fits


@needs_kernels
def test_conv_pool2d_propagates_nan_and_inf_like_torch():
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 8, 2, padding=1)
    x = torch.randn(4, 2, 9, 9)  # the last image is finite: it takes the fast path, the others the NaN-safe one
    x[0, 0, 2, 3], x[1, 1, 5, 5], x[2, 0, 0, 0] = float("nan"), float("inf"), -float("inf")
    for relu, nan_weight in ((True, False), (False, False), (True, True)):
        if nan_weight:  # a non-finite weight sends every image down the NaN-safe path
            with torch.no_grad():
                conv.weight[3, 1, 0, 0] = float("nan")
            x = x[3:]
        with torch.no_grad():
            ref = _kernels.reference(x, conv.weight, conv.bias, conv.padding, 2, relu)
            out = _fused(x, conv, 2, relu)
        assert ref.isnan().any() and torch.equal(out.isnan(), ref.isnan())
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5, equal_nan=True)
    big = torch.full((1, 1, 4, 4), 3e38)  # conv sums overflow to +inf: ReLU keeps it (not NaN)
    conv1 = nn.Conv2d(1, 8, 2)
    with torch.no_grad():
        conv1.weight.fill_(1.0), conv1.bias.zero_()
        assert torch.equal(_fused(big, conv1, 2, True), _kernels.reference(big, conv1.weight, conv1.bias, (0, 0), 2,
                                                                           True))


@needs_kernels
def test_conv_pool2d_rejects_a_weight_that_does_not_fit():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="packed weight"):
        _kernels.conv_pool2d(x, torch.randn(4 * 5, 16), torch.zeros(16), 2, 2, 0, 0, 2, False)  # made for Cin=5
    with pytest.raises(ValueError, match="multiple of 8"):
        _kernels.conv_pool2d(x, torch.randn(4 * 3, 10), torch.zeros(10), 2, 2, 0, 0, 2, False)
    with pytest.raises(ValueError, match="CPU float32"):
        _kernels.conv_pool2d(x.double(), torch.randn(4 * 3, 16), torch.zeros(16), 2, 2, 0, 0, 2, False)
    with pytest.raises(ValueError, match="bias"):
        _kernels.conv_pool2d(x, torch.randn(4 * 3, 16), torch.zeros(8), 2, 2, 0, 0, 2, False)


class Blocks(nn.Module):
    """conv -> ReLU -> pool in the spellings the rewrite fuses, and next to them the ones it must leave alone."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 8, 2, padding=1, bias=False)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.c4 = nn.Conv2d(8, 8, 3, padding=1, stride=2)  # stride 2: not fusable
        self.c5 = nn.Conv2d(8, 6, 1)                       # 6 output channels: not a multiple of 8
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.c1(x)))                   # fused with its ReLU
        x = F.max_pool2d(self.c2(x), kernel_size=2).relu()  # functional, keyword kernel
        x = F.max_pool2d(self.c3(x), 2, 1)                  # stride 1 pooling: not fused
        x = self.pool(self.c4(x))
        return self.pool(self.c5(x)).flatten(1)


def test_fuse_conv_pool_rewrites_only_what_the_kernel_computes():
    torch.manual_seed(2)
    m = Blocks().eval()
    gm, done = rewrite_for_inference(m, fuse_kernels=True)
    x = torch.randn(3, 1, 40, 40)
    if not _kernels.available():
        assert "fuse_conv_pool" not in done
        return
    assert done["fuse_conv_pool"] == 2
    fused = [mod for mod in gm.modules() if isinstance(mod, ConvPool2d)]
    assert [f.source for f in fused] == [m.c1, m.c2] and [f.relu for f in fused] == [True, True]
    with torch.no_grad():
        assert (gm(x) - m(x)).abs().max().item() < 1e-5
    with torch.enable_grad():  # gradients are not the kernel's business: torch's ops run, and backprop works
        xg = x.clone().requires_grad_(True)
        gm(xg).sum().backward()
        assert xg.grad is not None and xg.grad.abs().sum() > 0
    gm_plain, done_plain = rewrite_for_inference(m)
    assert "fuse_conv_pool" not in done_plain


def test_conv_output_used_twice_is_not_fused():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 8, 3)

        def forward(self, x):
            y = self.conv(x)
            return F.max_pool2d(y, 2).sum((1, 2, 3)) + y.mean((1, 2, 3))

    _, done = rewrite_for_inference(Shared().eval(), fuse_kernels=True)
    assert "fuse_conv_pool" not in done


@needs_kernels
def test_inference_module_follows_weight_changes_and_dtypes():
    from xrl.models import MNISTClassifier

    torch.manual_seed(3)
    clf = MNISTClassifier(10).eval()
    fast = InferenceModule(clf)
    x = torch.rand(20, 1, 28, 28)
    assert (fast(x) - clf(x)).abs().max().item() < 1e-5
    assert "fuse_conv_pool x2" in fast.status
    with torch.no_grad():
        clf.conv1.weight.mul_(-2.0)
        clf.conv2.bias.add_(0.5)
        ref = clf(x)
    assert (fast(x) - ref).abs().max().item() < 1e-5  # re-packed, not served stale
    clf.double()
    out = fast(x.double())  # another dtype: rebuilt for it, torch's ops instead of the float32 kernel
    with torch.no_grad():
        assert out.dtype == torch.float64 and (out - clf(x.double())).abs().max().item() < 1e-9
    clf.float()
    plain = InferenceModule(clf, kernels=False)
    assert "fuse_conv_pool" not in plain.status + str(plain.rewrites)
    assert (plain(x) - fast(x)).abs().max().item() < 1e-5


def _probe(env: dict[str, str]) -> str:
    code = ("from xrl import _kernels; from xrl._inference import InferenceModule; from xrl.models import "
            "MNISTClassifier; import torch; m = MNISTClassifier(10).eval(); f = InferenceModule(m); "
            "x = torch.rand(4, 1, 28, 28); assert (f(x) - m(x)).abs().max() < 1e-5; "
            "print(_kernels.available(), '|', _kernels.status, '|', f.rewrites)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env},
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_disabled_or_unbuildable_kernels_fall_back_to_torch(tmp_path):
    out = _probe({"XRL_KERNELS": "0"})
    assert out.startswith("False | disabled") and "fuse_conv_pool" not in out
    broken = tmp_path / "cxx"
    broken.write_text("#!/bin/sh\necho 'no compiler here' >&2\nexit 1\n")
    broken.chmod(0o755)
    out = _probe({"CXX": str(broken), "XRL_DATA_DIR": str(tmp_path / "cache")})
    assert out.startswith("False | unavailable (build failed") and "fuse_conv_pool" not in out
    assert not list((tmp_path / "cache" / "kernels").glob("*.so"))  # nothing half-written left behind


def test_the_kernel_links_torchs_openmp_runtime_even_when_another_is_loaded():
    import glob

    import sklearn.neighbors  # noqa: F401 - scikit-learn loads its own libgomp copy

    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    if "OpenMP" not in torch.__config__.parallel_info() or not glob.glob(os.path.join(torch_lib, "libgomp*")):
        pytest.skip("this torch build does not bundle GNU OpenMP")
    runtime = _kernels._openmp_runtime()
    assert runtime is not None and os.path.dirname(runtime) == torch_lib
