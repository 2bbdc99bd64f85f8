"""Pictures for the page: PNG bytes, frame sprites, compressed trajectory strips, dataset-example opacity."""
from __future__ import annotations

import io
import math

import numpy as np

__all__ = ["png_bytes", "frame_sprite", "frame_strip", "rescale_opacity", "to_uint8"]


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float [0, 1] (or uint8) channels-last image -> uint8."""
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a
    return (np.clip(a, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def png_bytes(img: np.ndarray, *, compress_level: int = 6) -> bytes:
    """A channels-last ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA) image, float [0, 1] or uint8, as PNG bytes."""
    from PIL import Image

    a = to_uint8(img)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(f"img: expected a channels-last [H, W, 3|4] image, got shape {a.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), "RGBA" if a.shape[-1] == 4 else "RGB").save(
        buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def sprite_columns(num_frames: int, frame_width: int, max_width: int = 4096) -> int:
    """Frames per sprite row: a square-ish grid no wider than ``max_width`` pixels (browsers cap image sizes)."""
    cols = max(1, math.ceil(math.sqrt(num_frames)))
    return max(1, min(cols, max_width // max(frame_width, 1), num_frames))


def frame_sprite(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """``uint8 [T, H, W, 3]`` -> one grid image (row-major, ``cols`` frames per row) and ``cols``."""
    T, H, W, C = frames.shape
    cols = sprite_columns(T, W)
    rows = math.ceil(T / cols)
    grid = np.zeros((rows * H, cols * W, C), np.uint8)
    for t in range(T):
        r, c = divmod(t, cols)
        grid[r * H:(r + 1) * H, c * W:(c + 1) * W] = frames[t]
    return grid, cols


def frame_strip(frames: np.ndarray, *, height: int | None = None) -> np.ndarray:
    """The original interface's compressed trajectory picture: a thin vertical slice of every frame side by side.

    ``uint8 [T, H, W, 3]`` -> ``[H, T * s, 3]`` with the slice ``s`` columns wide around 2/3 of the width (where the
    agent stands in side-scrollers; at least one column).
    """
    T, H, W, _ = frames.shape
    s = max(1, round(W * 2 / 64))
    start = min(W - s, int(round(W * 42 / 64)))
    strip = frames[:, :, start:start + s]                            # [T, H, s, 3]
    out = strip.transpose(1, 0, 2, 3).reshape(H, T * s, 3)          # [H, T*s, 3]
    if height is not None and height != H:
        rows = np.minimum((np.arange(height) * H / height).astype(int), H - 1)
        out = out[rows]
    return out


def rescale_opacity(rgba: np.ndarray, *, min_opacity: float = 15 / 255, opaque_frac: float = 0.1,
                    max_scale: float = 10.0) -> np.ndarray:
    """Make dataset-example mosaics legible: the strongest ``opaque_frac`` of patches become fully opaque and the
    rest scale up to them (at most ``max_scale`` times), with a floor of ``min_opacity`` where the feature is active
    at all (the original interface's rescaling). ``rgba`` is channels-last ``[H, W, 4]`` in [0, 1]."""
    out = np.array(rgba, dtype=np.float32, copy=True)
    alpha = out[..., 3]
    flat = alpha.reshape(-1)
    threshold = max(float(np.percentile(flat, (1 - opaque_frac) * 100)), float(flat.max()) / max_scale)
    if threshold <= 0:
        return out
    scaled = np.minimum(1.0, min_opacity + alpha * (1 - min_opacity) / threshold)
    out[..., 3] = np.where(alpha > 0, scaled, 0.0)
    return out
