"""Image utilities: layout handling, zoom, channel colouring, grids, smoothing filters, PNG writing / inline display.

Nothing here changes matplotlib's backend or registers figures with pyplot: figures are plain
``matplotlib.figure.Figure`` objects with an Agg canvas (:func:`subplots`), written to files only when a path is
given, and shown inline in notebooks (where returning a figure displays it).

Layouts: arrays may be channels-first (``[..., C, H, W]``, torch) or channels-last (``[..., H, W, C]``, lucid/PNG).
Every function takes ``layout=None|"chw"|"hwc"``; ``None`` guesses: channels-last when the last axis is shorter than
the third-to-last (``[10, 10, 7]``, ``[32, 32, 8]``), else channels-first (``[7, 10, 10]``); ties count as channels-last,
as in lucid. Pass ``layout`` explicitly whenever it matters.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xrl._validation import check_choice, check_scalar, error_message

__all__ = ["guess_layout", "to_hwc", "zoom_to", "channel_colors", "to_rgb", "image_grid", "show", "conv2d",
           "norm_filter", "attribution_to_rgb", "observation_rgb", "over_white", "save_png", "subplots",
           "save_figure"]

# Distinct, colour-blind-friendly-ish palette (Okabe-Ito first, then tab10 extras); one colour per channel.
_PALETTE = np.array([
    [230, 159, 0], [86, 180, 233], [0, 158, 115], [240, 228, 66], [0, 114, 178], [213, 94, 0], [204, 121, 167],
    [220, 50, 47], [148, 103, 189], [140, 86, 75], [127, 127, 127], [188, 189, 34], [23, 190, 207], [255, 255, 255],
], dtype=np.float32) / 255.0


def _np(x: Any) -> np.ndarray:
    try:
        import torch
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x)


def guess_layout(img: Any, layout: str | None = None) -> str:
    """``"hwc"`` or ``"chw"`` for an image array with at least 3 dims (see module doc for the rule)."""
    if layout is not None:
        check_choice("layout", layout, ("hwc", "chw"))
        return layout
    shape = np.shape(img)
    if len(shape) < 3:
        return "hw"
    return "hwc" if shape[-1] <= shape[-3] else "chw"


def to_hwc(img: Any, layout: str | None = None) -> np.ndarray:
    """Channels-last copy/view of ``img`` (2-d images get a channel axis)."""
    a = _np(img)
    lay = guess_layout(a, layout)
    if lay == "hw":
        return a[..., None]
    return np.moveaxis(a, -3, -1) if lay == "chw" else a


def over_white(img: Any, layout: str | None = None) -> np.ndarray:
    """``[H, W, 3]`` in [0, 1]: an RGBA image (e.g. dataset examples, whose alpha is the activation strength) drawn
    over white; an RGB image is returned channels-last. Values are clipped to [0, 1]."""
    a = to_hwc(img, layout).astype(np.float32, copy=False)
    if a.shape[-1] == 4:
        a = a[..., :3] * a[..., 3:] + (1 - a[..., 3:])
    return np.clip(a, 0, 1)


def zoom_to(img: Any, width: int, layout: str | None = None) -> np.ndarray:
    """Nearest-neighbour zoom so the image is ``width`` pixels wide (height scaled alike); the layout is kept.

    Works on single images and batches (``[..., H, W, C]`` or ``[..., C, H, W]``).
    """
    check_scalar("width", width, int, low=1)
    a = _np(img)
    if a.ndim < 2:
        raise ValueError(error_message("img", "an image with at least 2 dims", a))
    lay = guess_layout(a, layout)
    h_ax, w_ax = (-2, -1) if lay in ("chw", "hw") else (-3, -2)
    h, w = a.shape[h_ax], a.shape[w_ax]
    r = width / w
    rows = np.minimum((np.arange(max(1, round(h * r))) / r).astype(int), h - 1)
    cols = np.minimum((np.arange(width) / r).astype(int), w - 1)
    return np.take(np.take(a, rows, axis=h_ax), cols, axis=w_ax)


def channel_colors(n: int) -> np.ndarray:
    """``[n, 3]`` RGB colours in [0, 1], one per channel (palette, then evenly spaced hues)."""
    if n <= len(_PALETTE):
        return _PALETTE[:n].copy()
    import colorsys
    extra = [colorsys.hsv_to_rgb(i / (n - len(_PALETTE)), 0.8, 0.95) for i in range(n - len(_PALETTE))]
    return np.concatenate([_PALETTE, np.array(extra, np.float32)])


def to_rgb(img: Any, layout: str | None = None, colors: np.ndarray | None = None) -> np.ndarray:
    """Channels-last float image(s) in [0, 1] with 3 (RGB) or 4 (RGBA) channels.

    1 channel -> grey; 3 -> RGB; 4 -> RGBA; any other count (object channels of MinAtar, NMF features) -> each
    channel painted in its own colour (:func:`channel_colors`) and summed; if that exceeds 1 anywhere, the whole
    array (all images passed together) is divided by its maximum. uint8 input is scaled by 1/255.
    """
    raw = _np(img)
    a = to_hwc(raw, layout).astype(np.float32)
    if raw.dtype == np.uint8:
        a = a / 255.0
    c = a.shape[-1]
    if c == 1:
        out = np.repeat(a, 3, axis=-1)
    elif c in (3, 4) and colors is None:
        out = a
    else:
        cols = channel_colors(c) if colors is None else np.asarray(colors, np.float32)
        out = a @ cols                                              # [..., C] @ [C, 3] -> [..., 3]
        peak = float(out.max()) if out.size else 0.0
        if peak > 1.0:   # e.g. smoothed attributions: scale the whole array (not each image) into [0, 1]
            out = out / peak
    return np.clip(out, 0.0, 1.0)


def observation_rgb(obs: Any, layout: str | None = None) -> np.ndarray:
    """Observations as RGB: grey/RGB images as they are, object channels (any other count, including 4 as in
    MinAtar Breakout) painted one colour per channel. uint8 input is scaled by 1/255."""
    a = _np(obs)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    c = to_hwc(a, layout).shape[-1]
    return to_rgb(a, layout) if c in (1, 3) else to_rgb(a, layout, colors=channel_colors(c))


def attribution_to_rgb(attr: Any, layout: str | None = None, colors: np.ndarray | None = None) -> np.ndarray:
    """One colour per (NMF) channel for a non-negative attribution map ``[..., H, W, F]`` (or ``[..., F, H, W]``)."""
    a = to_hwc(attr, layout)
    cols = channel_colors(a.shape[-1]) if colors is None else colors
    return to_rgb(a, "hwc", colors=cols)


def image_grid(images: Sequence[Any] | np.ndarray, ncols: int | None = None, pad: int = 2, layout: str | None = None,
               background: float = 1.0) -> np.ndarray:
    """Tile images (each converted with :func:`to_rgb`; RGBA kept) into one channels-last image."""
    imgs = [to_rgb(im, layout) for im in (list(images) if not isinstance(images, np.ndarray) or images.ndim > 3
                                          else [images])]
    if not imgs:
        raise ValueError(error_message("images", "at least one image", images))
    ch = 4 if any(im.shape[-1] == 4 for im in imgs) else 3
    imgs = [np.concatenate([im, np.ones(im.shape[:-1] + (1,), np.float32)], -1) if im.shape[-1] < ch else im
            for im in imgs]
    n = len(imgs)
    ncols = ncols or n
    nrows = -(-n // ncols)
    h = max(im.shape[0] for im in imgs)
    w = max(im.shape[1] for im in imgs)
    grid = np.full((nrows * h + (nrows + 1) * pad, ncols * w + (ncols + 1) * pad, ch), background, np.float32)
    for k, im in enumerate(imgs):
        r, c = divmod(k, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + im.shape[0], x:x + im.shape[1]] = im
    return grid


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, squeeze: bool = False,
             **kwargs: Any):
    """``(fig, axes)`` like ``plt.subplots``, but a standalone ``matplotlib.figure.Figure`` with an Agg canvas: the
    backend is not touched and pyplot does not keep the figure (nothing to close, nothing shown behind the
    user's back). In a notebook a returned figure displays inline; :func:`save_figure` writes it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: float = 100, **kwargs: Any) -> Path:
    """Write a figure to ``path`` (format from the suffix, PNG by default) in one step (:func:`xrl.io.atomic_file`);
    parent folders are created. Returns the path."""
    from xrl.io import atomic_file

    path = Path(path)
    with atomic_file(path) as f:
        fig.savefig(f, format=path.suffix.lstrip(".").lower() or "png", dpi=dpi, **kwargs)
    return path


def save_png(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Write a channels-last float [0, 1] (or uint8) RGB/RGBA image in one step; parent folders are created."""
    import matplotlib.image as mpimg

    from xrl.io import atomic_file

    path = Path(path)
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    with atomic_file(path) as f:
        mpimg.imsave(f, a, format="png")
    return path


_show_counter = itertools.count()


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
        ip = get_ipython()
        return ip is not None and hasattr(ip, "kernel")
    except Exception:
        return False


def show(images: Any, labels: Sequence[str] | None = None, path: str | os.PathLike | None = None,
         layout: str | None = None, ncols: int | None = None, out_dir: str | os.PathLike | None = None
         ) -> Path | None:
    """Show one image or a batch as a grid: displayed inline in a notebook, written as a PNG only when asked.

    Parameters
    ----------
    images : array [H, W, C] / [C, H, W] or a batch [N, ...] or a list of images
    labels : list of str, optional
        One label per image, drawn under it (e.g. value estimates as in seed 003).
    path : path, optional
        PNG to write.
    out_dir : path, optional
        Folder to write ``show_<pid>_<k>.png`` into when no ``path`` is given.

    Returns
    -------
    The PNG's path when one was written, else None. Outside a notebook, with neither ``path`` nor ``out_dir``,
    nothing can be shown: a warning says so.
    """
    arr = images
    if not isinstance(images, (list, tuple)):
        rgb = to_rgb(images, layout)                                  # the whole batch at once: one colour scale
        arr = list(rgb) if rgb.ndim == 4 else [rgb]
        layout = "hwc"
    if labels is not None and len(labels) != len(arr):
        raise ValueError(error_message("labels", f"one label per image ({len(arr)})", len(labels)))
    if path is None and out_dir is not None:
        path = Path(out_dir) / f"show_{os.getpid()}_{next(_show_counter)}.png"
    notebook = _in_notebook()
    if path is None and not notebook:
        import warnings
        warnings.warn("show: not in a notebook and no path given, so nothing was displayed or written; pass "
                      "path='image.png' to write the picture", UserWarning, stacklevel=2)
        return None
    import io as _io
    buffer = _io.BytesIO()
    if labels is not None:
        n = len(arr)
        nc = ncols or n
        fig, axes = subplots(-(-n // nc), nc, figsize=(2 * nc, 2.3 * -(-n // nc)))
        for k, ax in enumerate(axes.flat):
            ax.axis("off")
            if k < n:
                ax.imshow(to_rgb(arr[k], layout), interpolation="nearest")
                ax.set_title(str(labels[k]), fontsize=9)
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    else:
        import matplotlib.image as mpimg
        grid = image_grid(arr, ncols=ncols, layout=layout)
        mpimg.imsave(buffer, (np.clip(grid, 0, 1) * 255).round().astype(np.uint8), format="png")
    if path is not None:
        from xrl.io import atomic_write_bytes
        path = Path(path)
        atomic_write_bytes(path, buffer.getvalue())
    if notebook:
        from IPython.display import Image, display
        display(Image(data=buffer.getvalue()))
    return path


def norm_filter(length: int, norm_ord: float = 2, norm_func=lambda n: np.exp(-n), clip: bool = True) -> np.ndarray:
    """lucid rl_util's smoothing filter ``[length, length]``: ``norm_func(||offset from centre||)`` (``exp(-d)``),
    clipped to the largest disc that fits (entries below the edge-centre value set to 0). Not normalised, as in lucid,
    so ``conv2d(attr, norm_filter(15))`` spreads attribution over nearby positions and keeps its scale comparable.
    """
    check_scalar("length", length, int, low=1)
    offsets = np.indices((length, length)) - (length - 1) / 2               # [2, L, L]
    result = norm_func(np.linalg.norm(offsets, ord=norm_ord, axis=0)).astype(np.float32)
    if clip:
        bound = np.amax(np.amin(result, axis=0), axis=0)
        result = result * np.logical_or(result >= bound, np.isclose(result, bound, atol=0))
    return result


def conv2d(x: Any, filter_: Any, layout: str | None = None) -> np.ndarray:
    """Depthwise 'same' 2-d convolution of each channel of ``x`` ([..., H, W, C] or [..., C, H, W]) with a
    ``[h, w]`` filter (zero padding), e.g. ``conv2d(attr, filter_=norm_filter(15))``; returns ``x``'s layout."""
    import torch
    import torch.nn.functional as F
    a = _np(x).astype(np.float32)
    f = np.asarray(filter_, np.float32)
    if f.ndim != 2:
        raise ValueError(error_message("filter_", "a 2-d [h, w] filter", f))
    lay = guess_layout(a, layout)
    t = torch.from_numpy(np.ascontiguousarray(to_hwc(a, lay) if lay != "hw" else a[..., None]))
    lead = t.shape[:-3]
    t = t.reshape((-1,) + t.shape[-3:]).permute(0, 3, 1, 2)                 # [N, H, W, C] -> [N, C, H, W]
    C = t.shape[1]
    k = torch.from_numpy(f)[None, None].repeat(C, 1, 1, 1)                  # [C, 1, h, w]
    fh, fw = f.shape
    t = F.pad(t, ((fw - 1) // 2, fw // 2, (fh - 1) // 2, fh // 2))
    out = F.conv2d(t, k, groups=C).permute(0, 2, 3, 1).reshape(lead + (t.shape[2] - fh + 1, t.shape[3] - fw + 1, C))
    out = out.numpy()
    if lay == "hw":
        return out[..., 0]
    return np.moveaxis(out, -1, -3) if lay == "chw" else out
