"""Graph rewrites: the rewritten graph computes the module's function, for every pattern variant it accepts."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xrl._rewrite import PhaseConv2d, refresh, rewrite_for_inference


class ConvReluPool(nn.Module):
    """Four spellings of conv -> ReLU -> max-pool; the last ReLU output also feeds a sum, so it must stay."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 2, padding=1)
        self.conv3 = nn.Conv2d(8, 4, 3, padding=1)
        self.relu, self.pool = nn.ReLU(inplace=True), nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))                    # module ReLU (in place) -> module pool
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2, 0, 1, True)  # functional, ceil mode
        x = F.max_pool2d(self.conv3(x).relu(), 3, 1, 1)             # method ReLU, padded pool
        r = F.relu(x)
        return F.max_pool2d(r, 2).flatten(1).sum(1, keepdim=True) + r.mean((1, 2, 3))[:, None]


def test_pool_before_relu_gives_the_same_bits():
    torch.manual_seed(0)
    m = ConvReluPool()
    gm, done = rewrite_for_inference(m)
    assert done == {"pool_before_relu": 3}  # the shared ReLU output is left alone
    x = torch.randn(5, 3, 17, 19)
    with torch.no_grad():
        assert torch.equal(gm(x), m(x))


class UpConv(nn.Module):
    def __init__(self, how: str, scale: int, kernel, padding, bias: bool) -> None:
        super().__init__()
        self.how, self.scale = how, scale
        self.up = {"module": nn.Upsample(scale_factor=scale), "nearest2d": nn.UpsamplingNearest2d(scale_factor=scale),
                   "functional": None}[how]
        self.conv = nn.Conv2d(3, 5, kernel, padding=padding, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.up(x) if self.up is not None else F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return torch.sigmoid(self.conv(u))


@pytest.mark.parametrize("how,scale,kernel,padding,bias", [
    ("module", 2, 3, 1, True), ("module", 2, 3, 0, True), ("nearest2d", 2, 3, 2, False), ("functional", 3, 3, 1, True),
    ("module", 2, 2, 1, True), ("functional", 2, 5, 2, True), ("module", 3, (3, 1), (1, 0), True),
    ("module", 2, 4, 0, False), ("module", 2, 1, 0, True)])
def test_upsampling_folded_into_the_convolution_gives_the_same_function(how, scale, kernel, padding, bias):
    torch.manual_seed(1)
    m = UpConv(how, scale, kernel, padding, bias).eval()
    gm, done = rewrite_for_inference(m)
    assert done == {"fold_upsample_into_conv": 1}
    assert not any(isinstance(s, nn.Upsample) for s in gm.modules())
    for shape in [(4, 3, 7, 6), (1, 3, 5, 9)]:
        x = torch.randn(shape)
        with torch.no_grad():
            ref, out = m(x), gm(x)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_folded_weights_follow_the_convolution_after_refresh():
    torch.manual_seed(2)
    m = UpConv("module", 2, 3, 1, True).eval()
    gm, _ = rewrite_for_inference(m)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        m.conv.weight.mul_(-3.0)
        assert (gm(x) - m(x)).abs().max() > 1e-2  # derived weights are a snapshot ...
        refresh(gm)
        torch.testing.assert_close(gm(x), m(x), rtol=1e-5, atol=1e-6)  # ... re-derived on request
    assert sum(isinstance(s, PhaseConv2d) for s in gm.modules()) == 1


class NotFoldable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.conv = nn.Conv2d(3, 3, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = F.interpolate(x, scale_factor=2)  # feeds two users: folding it into one would not remove it
        return self.conv2(self.up(x)) + self.conv(u)[..., :1, :1].mean() + u.mean()


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv(x)), 2) if x.sum() > 0 else x


def test_other_patterns_and_untraceable_modules_are_left_alone():
    m = NotFoldable()
    assert rewrite_for_inference(m) == (m, {})  # bilinear, strided conv, shared upsampling: nothing applies
    d = DataDependent()
    assert rewrite_for_inference(d) == (d, {})  # symbolic tracing fails on the branch: the module itself
    t = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)).train()
    t[2].eval()
    rewrite_for_inference(t)
    assert t.training and t[0].training and not t[2].training  # traced in eval mode, each module's mode restored


def test_single_channel_pixel_shuffle_of_channels_last_tensors():
    from xrl._rewrite import _pixel_shuffle
    for s in (2, 3):
        y = torch.randn(3, s * s, 5, 4).contiguous(memory_format=torch.channels_last)
        assert torch.equal(_pixel_shuffle(y, s), F.pixel_shuffle(y, s))
        y2 = torch.randn(3, 2 * s * s, 5, 4)
        assert torch.equal(_pixel_shuffle(y2, s), F.pixel_shuffle(y2, s))
