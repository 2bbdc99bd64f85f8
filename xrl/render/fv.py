"""Feature visualization: image parameterisations, transforms and objectives (the lucid/lucent split), for torch.

Adapted to small multi-channel observations (MinAtar: 10 x 10 x C object channels; CoinRun: 64 x 64 RGB):
- :func:`fourier_image` — an image parameterised by its 2-d Fourier coefficients scaled by ``1/f^decay_power``
  (lucid's ``fft_image``), plus, for 3-channel images, lucid's colour decorrelation; squashed into [0, 1] by a sigmoid.
  For non-RGB observations the channels are left uncorrelated (no natural colour basis exists).
- :func:`jitter`, :func:`random_scale`, :func:`pad`, :func:`compose` — robustness transforms; jitter is in pixels, so
  use 1 pixel on a 10 x 10 board, where lucid's default of a few pixels would move objects off the board.
- objectives: :func:`direction` (lucid's ``direction_neuron``), :func:`channel`, :func:`l2`; they are plain callables
  ``objective(acts_dict) -> loss`` that get the activations of the layers they name.
- :func:`render_vis` — optimise, with a seeded generator (no global RNG), returning numpy images [B, C, H, W] in [0, 1].

Unlike lucent: no device global (the model's device is used), no global RNG, and hooks are always removed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xrl._utils import resolve_device, torch_generator
from xrl._validation import check_scalar, error_message
from xrl.hooks import capture

__all__ = ["fourier_image", "pixel_image", "jitter", "random_scale", "pad", "compose", "Objective", "direction",
           "channel", "l2", "render_vis"]

# lucid's colour correlation (square root of the ImageNet colour covariance), normalised as in lucid.
_COLOR_CORR = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
_COLOR_CORR = _COLOR_CORR / np.max(np.linalg.norm(_COLOR_CORR, axis=0))


def _freqs(h: int, w: int) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)                                   # [h, w//2+1]


def fourier_image(shape: Sequence[int], batch: int = 1, *, sd: float = 0.01, decay_power: float = 1.0,
                  decorrelate: bool | None = None, seed: int | None = 0, device: Any = "cpu"
                  ) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """Fourier-parameterised images ``[batch, C, H, W]`` in [0, 1].

    Returns ``(params, image_fn)``: optimise ``params``; ``image_fn()`` gives the current images.
    """
    C, H, W = (int(s) for s in shape)
    dev = torch.device(device)
    gen = torch_generator(seed, "cpu")
    spectrum = sd * torch.randn(batch, C, H, W // 2 + 1, 2, generator=gen)
    param = spectrum.to(dev).requires_grad_(True)
    scale = 1.0 / np.maximum(_freqs(H, W), 1.0 / max(H, W)) ** decay_power
    scale = torch.tensor(scale * np.sqrt(H * W), dtype=torch.float32, device=dev)   # [H, W//2+1]
    decor = (C == 3) if decorrelate is None else decorrelate
    corr = torch.tensor(_COLOR_CORR, device=dev)

    def image_fn() -> torch.Tensor:
        spec = torch.view_as_complex(param) * scale                     # [B, C, H, W//2+1]
        img = torch.fft.irfftn(spec, s=(H, W), norm="ortho")             # [B, C, H, W]
        img = img / 4.0                                                  # lucid's magic constant
        if decor:
            img = torch.einsum("bchw,dc->bdhw", img, corr)
        return torch.sigmoid(img)

    return [param], image_fn


def pixel_image(shape: Sequence[int], batch: int = 1, *, sd: float = 0.1, seed: int | None = 0, device: Any = "cpu"
                ) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """Plain pixel parameterisation through a sigmoid (useful for tiny boards)."""
    C, H, W = (int(s) for s in shape)
    gen = torch_generator(seed, "cpu")
    param = (sd * torch.randn(batch, C, H, W, generator=gen)).to(device).requires_grad_(True)
    return [param], lambda: torch.sigmoid(param)


Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def jitter(d: int) -> Transform:
    """Random translation by up to ``d`` pixels (crop of a reflect-padded image)."""
    check_scalar("d", d, int, low=0)

    def t(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if d == 0:
            return img
        H, W = img.shape[-2:]
        padded = F.pad(img, (d, d, d, d), mode="replicate")
        dy, dx = (int(v) for v in torch.randint(0, 2 * d + 1, (2,), generator=gen))
        return padded[..., dy:dy + H, dx:dx + W]
    return t


def pad(w: int, value: float = 0.5) -> Transform:
    check_scalar("w", w, int, low=0)
    return lambda img, gen: F.pad(img, (w, w, w, w), value=value) if w else img


def random_scale(scales: Sequence[float]) -> Transform:
    """Rescale by a factor drawn from ``scales`` (bilinear), keeping the size by crop/pad to the original."""
    scales = list(scales)

    def t(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        s = scales[int(torch.randint(0, len(scales), (1,), generator=gen))]
        H, W = img.shape[-2:]
        out = F.interpolate(img, scale_factor=s, mode="bilinear", align_corners=False)
        h, w = out.shape[-2:]
        if h >= H:
            y, x = (h - H) // 2, (w - W) // 2
            return out[..., y:y + H, x:x + W]
        return F.pad(out, ((W - w) // 2, W - w - (W - w) // 2, (H - h) // 2, H - h - (H - h) // 2), mode="replicate")
    return t


def compose(transforms: Sequence[Transform]) -> Transform:
    def t(img, gen):
        for f in transforms:
            img = f(img, gen)
        return img
    return t


@dataclass
class Objective:
    """A loss to MINIMISE from layer activations: ``fn(acts: dict[str, Tensor]) -> scalar``; ``layers`` it reads."""
    fn: Callable[[dict], torch.Tensor]
    layers: list[str] = field(default_factory=list)

    def __call__(self, acts: dict) -> torch.Tensor:
        return self.fn(acts)

    def __add__(self, other: "Objective") -> "Objective":
        return Objective(lambda a: self.fn(a) + other.fn(a), self.layers + other.layers)

    def __sub__(self, other: "Objective") -> "Objective":
        return Objective(lambda a: self.fn(a) - other.fn(a), self.layers + other.layers)

    def __mul__(self, k: float) -> "Objective":
        return Objective(lambda a: k * self.fn(a), self.layers)

    __rmul__ = __mul__

    def __radd__(self, other):  # sum([...]) starts from 0
        return self if other == 0 else NotImplemented


def direction(layer: str, vec: Any, batch: int | None = None, *, position: tuple[int, int] | None = None) -> Objective:
    """Maximise ``<acts[b, :, y, x], vec>`` at the central (or given) position (lucid's ``direction_neuron``).

    ``batch``: the image index it applies to (None: all images). For 2-d activations ``[B, C]`` the position is ignored.
    """
    v = torch.as_tensor(np.asarray(vec, np.float32))

    def fn(acts):
        a = acts[layer]
        vv = v.to(a.device, a.dtype)
        if a.ndim == 4:
            y, x = position if position is not None else (a.shape[2] // 2, a.shape[3] // 2)
            a = a[:, :, y, x]                                           # [B, C]
        s = a @ vv                                                      # [B]
        return -(s.sum() if batch is None else s[batch])
    return Objective(fn, [layer])


def channel(layer: str, n: int, batch: int | None = None) -> Objective:
    """Maximise the mean activation of channel ``n``."""
    def fn(acts):
        a = acts[layer][:, n]
        a = a.reshape(a.shape[0], -1).mean(1)
        return -(a.sum() if batch is None else a[batch])
    return Objective(fn, [layer])


def l2(layer: str) -> Objective:
    """The L2 norm of a layer's activations (subtract a multiple of it to keep activations small)."""
    return Objective(lambda acts: -acts[layer].pow(2).sum().sqrt(), [layer])


def render_vis(model: nn.Module, objective: Objective, param_f: Callable[[], tuple], *,
               transforms: Sequence[Transform] = (), steps: int = 256, lr: float = 0.05, seed: int | None = 0,
               device: Any = None, verbose: bool = False) -> np.ndarray:
    """Optimise the parameterised images to minimise ``objective``; returns numpy ``[B, C, H, W]`` in [0, 1].

    ``param_f()`` returns ``(params, image_fn)`` (see :func:`fourier_image`). The model is not modified; its
    training/eval mode is left as it is (call ``model.eval()`` first for batch-norm models).
    """
    check_scalar("steps", steps, int, low=1)
    dev = resolve_device(device, model)
    params, image_fn = param_f()
    if not isinstance(params, (list, tuple)) or not callable(image_fn):
        raise TypeError(error_message("param_f", "a function returning (params, image_fn)", type(params).__name__))
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch_generator(seed, "cpu")
    t = compose(list(transforms))
    layers = sorted(set(objective.layers))
    first = last = None
    for i in range(steps):
        opt.zero_grad(set_to_none=True)
        img = t(image_fn(), gen).to(dev)
        with capture(model, layers, detach=False) as acts:
            model(img)
        loss = objective(acts)
        loss.backward()
        opt.step()
        if i == 0:
            first = float(loss.detach())
        last = float(loss.detach())
    if verbose:
        print(f"render_vis: loss {first:.4g} -> {last:.4g} after {steps} steps")
    with torch.no_grad():
        return image_fn().detach().cpu().numpy()
