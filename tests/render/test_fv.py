"""Feature visualization pieces: colour statistics, the palette prior, size-keeping transforms, the decorrelated and
range-bounded Fourier parameterisation, and the whole recipe on a tiny real model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xrl.render.fv import (INPUT, PROGRESS, ColorStats, color_prior, color_statistics, direction, fourier_image,
                           jitter, random_affine, random_rotate, robust_transforms, visualize_directions)

PALETTE = np.array([[0.05, 0.1, 0.3], [0.9, 0.85, 0.8], [1.0, 0.8, 0.1]], np.float32)   # sky, floor, coin


def palette_frames(n=24, size=16, seed=0):
    """Frames drawn from three colours: a dark sky, a light floor below a random height, yellow coins."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        img = np.broadcast_to(PALETTE[0][:, None, None], (3, size, size)).copy()
        img[:, rng.integers(size // 2, size):] = PALETTE[1][:, None, None]
        y, x = rng.integers(0, size - 2, 2)
        img[:, y:y + 2, x:x + 2] = PALETTE[2][:, None, None]
        out[i] = img
    return out


def test_color_statistics_of_known_frames():
    frames = palette_frames()
    stats = color_statistics(frames, palette_size=3)
    pix = frames.transpose(0, 2, 3, 1).reshape(-1, 3)
    np.testing.assert_allclose(stats.mean, pix.mean(0), rtol=1e-5)
    cov = np.cov(pix, rowvar=False)
    np.testing.assert_allclose(stats.sqrt_cov @ stats.sqrt_cov, cov, atol=1e-5)
    np.testing.assert_allclose(stats.low, PALETTE.min(0), atol=1e-6)
    np.testing.assert_allclose(stats.high, PALETTE.max(0), atol=1e-6)
    # the palette finds the three colours
    found = sorted(map(tuple, np.round(stats.palette, 3)))
    assert found == sorted(map(tuple, np.round(PALETTE, 3)))
    # uint8 frames are in the model's units (/255)
    stats8 = color_statistics((frames * 255).round().astype(np.uint8), palette_size=3)
    np.testing.assert_allclose(stats8.mean, stats.mean, atol=2e-3)
    with pytest.raises(ValueError, match=r"obs: expected observations \[N, C, H, W\]"):
        color_statistics(frames[0])
    with pytest.raises(ValueError, match="obs: expected finite values"):
        color_statistics(np.full((2, 3, 4, 4), np.nan, np.float32))


def test_color_prior_is_zero_on_the_palette_and_ramps_in():
    stats = color_statistics(palette_frames(), palette_size=3)
    prior = color_prior(stats, coeff=1.0)
    on = torch.tensor(palette_frames(2))
    off = torch.tensor([[0.0, 1.0, 0.0]]).view(1, 3, 1, 1).expand(2, 3, 16, 16)      # pure green: no game colour
    assert float(prior({INPUT: on})) == pytest.approx(0.0, abs=1e-3)
    far = float(prior({INPUT: off}))
    assert far > 0.3                                                    # squared distance to the nearest colour
    assert float(prior({INPUT: off, PROGRESS: 0.0})) == 0.0             # ramped in from zero
    assert float(prior({INPUT: off, PROGRESS: 0.25})) == pytest.approx(far / 2, rel=1e-5)
    with pytest.raises(ValueError, match="stats: expected ColorStats with a palette"):
        color_prior(ColorStats(stats.mean, stats.sqrt_cov, stats.low, stats.high, stats.shape, None))


def test_fourier_image_starts_at_the_mean_colour_within_the_range():
    stats = color_statistics(palette_frames(), palette_size=3)
    params, image_fn = fourier_image((3, 16, 16), 2, sd=1e-4, color_stats=stats, seed=0)
    img = image_fn()
    np.testing.assert_allclose(img.detach().mean((0, 2, 3)).numpy(), stats.mean, atol=2e-3)
    with torch.no_grad():                                                # extreme spectra stay inside [low, high]
        params[0].mul_(1e6)
    img = image_fn().detach().numpy()
    assert (img >= stats.low[None, :, None, None] - 1e-6).all()
    assert (img <= stats.high[None, :, None, None] + 1e-6).all()
    with pytest.raises(ValueError, match="color_stats: expected statistics of 4-channel observations"):
        fourier_image((4, 16, 16), 1, color_stats=stats)
    # lucid's default without statistics: [0, 1] around grey, decorrelated RGB
    _, grey = fourier_image((3, 8, 8), 1, sd=1e-6, seed=0)
    np.testing.assert_allclose(grey().detach().numpy(), 0.5, atol=1e-4)


def test_affine_transforms_keep_size_and_fill():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    same = random_affine(translate=0, scales=[1.0], degrees=[0.0], fill=0.3)(img, g)
    torch.testing.assert_close(same, img, atol=1e-5, rtol=0)
    zoomed_out = random_affine(translate=0, scales=[0.5], degrees=[0.0], fill=0.3)(img, g)
    assert zoomed_out.shape == img.shape
    torch.testing.assert_close(zoomed_out[:, :, 0, 0], torch.full((2, 3), 0.3), atol=1e-6, rtol=0)  # corner: fill
    turned = random_rotate([90.0], fill=0.3)(img, g)
    torch.testing.assert_close(turned, torch.rot90(img, 1, dims=(2, 3)), atol=1e-4, rtol=0)
    assert len(robust_transforms((3, 10, 10))) == 1                      # a board: one-pixel jitter only
    big = robust_transforms((3, 64, 64), fill=[0.1, 0.2, 0.3])
    assert len(big) == 2 and big[0](img, g).shape == img.shape
    assert jitter(1)(img, g).shape == img.shape
    with pytest.raises(ValueError, match="scales/degrees"):
        random_affine(scales=[])


def test_direction_cossim_prefers_aligned_activations():
    acts = {"l": torch.tensor([[[[2.0]], [[0.0]]], [[[2.0]], [[2.0]]]])}   # [2, 2, 1, 1]
    plain = direction("l", [1.0, 0.0])(acts)
    cos = direction("l", [1.0, 0.0], cossim_pow=2)(acts)
    assert float(plain) == pytest.approx(-4.0)
    assert float(cos) == pytest.approx(-(2.0 + 2.0 * 0.5))                # the second is 45 degrees off: cos^2 = .5


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(6 * 16 * 16, 2)

    def forward(self, x):
        return self.head(self.act(self.conv(x)).flatten(1))


def test_visualize_directions_raises_the_objective_and_keeps_game_colours():
    net = TinyNet().eval()
    frames = palette_frames(32)
    stats = color_statistics(frames, palette_size=3)
    dirs = np.abs(np.random.default_rng(0).normal(size=(2, 6))).astype(np.float32)

    def centre_score(imgs):
        with torch.no_grad():
            a = net.act(net.conv(torch.from_numpy(imgs)))[:, :, 8, 8]
        return (a.numpy() * dirs).sum(1)

    def off_palette(imgs):
        pix = imgs.transpose(0, 2, 3, 1).reshape(-1, 3)
        return float((((pix[:, None] - PALETTE[None]) ** 2).sum(-1).min(1) > 0.02).mean())

    start = np.broadcast_to(stats.mean[None, :, None, None], (2, 3, 16, 16)).astype(np.float32)
    with_prior = visualize_directions(net, "act", dirs, (3, 16, 16), color_stats=stats, steps=150, lr=0.1, seed=0)
    without = visualize_directions(net, "act", dirs, (3, 16, 16), color_stats=stats, steps=150, lr=0.1, seed=0,
                                   prior_coeff=0)
    again = visualize_directions(net, "act", dirs, (3, 16, 16), color_stats=stats, steps=150, lr=0.1, seed=0)
    np.testing.assert_array_equal(with_prior, again)                     # seeded
    assert with_prior.shape == (2, 3, 16, 16)
    assert (centre_score(with_prior) > 2 * centre_score(start)).all()
    assert centre_score(without).max() > 2 * centre_score(start).max()
    assert off_palette(with_prior) < 0.65 * off_palette(without)         # closer to the game's colours
    assert (with_prior >= stats.low[None, :, None, None] - 1e-6).all()
    with pytest.raises(ValueError, match="param: expected 'fourier' or 'pixel'"):
        visualize_directions(net, "act", dirs, (3, 16, 16), param="wavelet")
