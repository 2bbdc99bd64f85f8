"""Pictures: layouts, zoom, colouring, smoothing filters, PNG writing, Fourier parameterisation, transforms."""
import numpy as np
import pytest
import torch

from xrl.render import (channel_colors, conv2d, fourier_image, image_grid, jitter, norm_filter, show, to_rgb,
                        zoom_to)

torch.set_num_threads(1)


def test_zoom_keeps_layout_and_values():
    chw = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)            # [C=2, H=3, W=4]
    z = zoom_to(chw, 8)
    assert z.shape == (2, 6, 8) and z[0, 0, 0] == chw[0, 0, 0] and z[1, -1, -1] == chw[1, -1, -1]
    hwc = np.zeros((5, 10, 10, 7))
    assert zoom_to(hwc, 30, layout="hwc").shape == (5, 30, 30, 7)
    assert zoom_to(np.zeros((8, 32, 32, 8)), 64).shape == (8, 64, 64, 8)     # seed: attr_reduced, channels last


def test_to_rgb_and_channel_colours():
    one_hot = np.zeros((7, 10, 10), np.float32)
    one_hot[2, 4, 5] = 1
    rgb = to_rgb(one_hot)
    assert rgb.shape == (10, 10, 3)
    np.testing.assert_allclose(rgb[4, 5], channel_colors(7)[2])
    assert rgb[0, 0].sum() == 0
    assert len({tuple(c) for c in channel_colors(20)}) == 20


def test_norm_filter_and_conv2d():
    f = norm_filter(15)
    assert f.shape == (15, 15) and f[7, 7] == 1.0 and f[0, 0] == 0 and f[7, 0] > 0
    x = np.zeros((2, 9, 9, 3), np.float32)
    x[0, 4, 4, 1] = 1
    k = np.ones((3, 3), np.float32)
    y = conv2d(x, filter_=k)
    assert y.shape == x.shape and y[0, 3:6, 3:6, 1].sum() == 9 and y[0, ..., 0].sum() == 0
    y2 = conv2d(np.moveaxis(x, -1, 1), filter_=k, layout="chw")
    np.testing.assert_allclose(np.moveaxis(y2, 1, -1), y)


def test_show_writes_png(tmp_path):
    p = show(np.random.default_rng(0).random((3, 3, 8, 8)), path=tmp_path / "a.png")
    assert p.exists() and p.stat().st_size > 0
    p2 = show([np.zeros((4, 6, 6))], labels=["0.123"], path=tmp_path / "b.png")
    assert p2.exists()
    g = image_grid([np.zeros((3, 4, 4)), np.ones((4, 4, 4))], ncols=2, pad=1)
    assert g.shape == (6, 11, 4)


def test_fourier_image_seeded_and_bounded():
    p1, f1 = fourier_image((7, 10, 10), 2, seed=0)
    p2, f2 = fourier_image((7, 10, 10), 2, seed=0)
    a, b = f1(), f2().detach()
    torch.testing.assert_close(a, b)
    assert a.shape == (2, 7, 10, 10) and float(a.detach().min()) >= 0 and float(a.detach().max()) <= 1
    a.sum().backward()
    assert p1[0].grad is not None and float(p1[0].grad.abs().sum()) > 0
    _, rgb = fourier_image((3, 16, 16), 1, seed=1)
    assert rgb().shape == (1, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 10, 10)
    assert jitter(1)(img, g).shape == img.shape
def test_over_white_composites_by_alpha_and_passes_rgb_through():
    from xrl.render.images import over_white

    rgba = np.zeros((4, 2, 3), np.float32)
    rgba[:3] = 0.2                       # dark grey everywhere
    rgba[3, 0] = 1.0                     # opaque first row, transparent second
    out = over_white(rgba, "chw")
    assert out.shape == (2, 3, 3)
    np.testing.assert_allclose(out[0], 0.2)
    np.testing.assert_allclose(out[1], 1.0)
    rgb = np.full((3, 2, 3), 1.5, np.float32)
    np.testing.assert_allclose(over_white(rgb, "chw"), np.ones((2, 3, 3)))   # channels-last, clipped
