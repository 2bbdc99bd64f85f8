"""THE pictures: layout handling, zoom, channel colouring, grids, smoothing, PNG writing, feature visualization.

Compute never displays: explanation code returns arrays; :func:`show` displays them inline in a notebook and writes a
PNG only when given a path. Nothing here changes matplotlib's backend (figures are standalone, see :func:`subplots`).
"""
from xrl.render.explanation import as_image, plot_explanation
from xrl.render.fv import (Objective, channel, compose, direction, fourier_image, jitter, l2, pad, pixel_image,
                           random_scale, render_vis)
from xrl.render.images import (attribution_to_rgb, channel_colors, conv2d, guess_layout, image_grid, norm_filter,
                               observation_rgb,
                               save_figure, save_png, show, subplots, to_hwc, to_rgb, zoom_to)
from xrl.render.labelled import labelled_grid

__all__ = ["zoom_to", "show", "conv2d", "norm_filter", "image_grid", "to_rgb", "to_hwc", "guess_layout",
           "channel_colors", "attribution_to_rgb", "observation_rgb", "save_png", "save_figure", "subplots",
           "fourier_image", "pixel_image", "jitter", "random_scale", "pad", "compose", "Objective", "direction",
           "channel", "l2", "render_vis", "as_image", "plot_explanation", "labelled_grid"]
