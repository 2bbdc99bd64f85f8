"""Activations, attributions and receptive fields of a layer, numpy in -> numpy out (seed 003's get_acts / get_attr)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from xrl._utils import eval_mode, resolve_device
from xrl._validation import check_scalar, error_message
from xrl.attribution import integrated_gradients, layer_activations, to_tensor
from xrl.hooks import INPUT, first_tensor, resolve_layer_name

__all__ = ["get_acts", "get_attr", "ReceptiveField", "receptive_field"]


def _check_obs(model: nn.Module, obs: torch.Tensor) -> None:
    """A clear error when observations do not match the first convolution's channels (a common layout slip)."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    if isinstance(first, nn.Conv2d):
        if obs.ndim != 4 or obs.shape[1] != first.in_channels:
            hint = ""
            if obs.ndim == 4 and obs.shape[-1] == first.in_channels:
                hint = "it looks channels-last: use obs.transpose(0, 3, 1, 2) (numpy) or obs.permute(0, 3, 1, 2)"
            raise ValueError(error_message("obs", f"a batch [B, {first.in_channels}, H, W] (channels first, as the "
                                           f"model's first Conv2d takes {first.in_channels} channels)", obs,
                                           hint or None))


def get_acts(model: nn.Module, layer: str, obs: Any, *, batch_size: int = 512, device: Any = None):
    """Activations of ``layer`` for ``obs`` [B, C, H, W], batched, without gradients, with the model in eval mode
    (every submodule's own mode is restored afterwards, also after an error; BatchNorm statistics are not updated).

    ``layer`` may be any submodule name (dotted or underscore), e.g. ``"fc_value"`` to read the value estimates; a
    ``[B, 1]`` output is returned as ``[B]`` (so ``f"{v:.3f}" for v in get_acts(model, "fc_value", obs)`` works, as in
    seed 003). numpy in -> numpy out; tensors stay on the model's device.
    """
    check_scalar("batch_size", batch_size, int, low=1)
    dev = resolve_device(device, model)
    name = resolve_layer_name(model, layer, allow_input=True)
    x, is_numpy = to_tensor("obs", obs, dev, model)
    _check_obs(model, x)
    acts = x if name == INPUT else layer_activations(model, layer, x, batch_size=batch_size)
    if acts.ndim == 2 and acts.shape[1] == 1:
        acts = acts[:, 0]
    return acts.cpu().numpy() if is_numpy else acts


def get_attr(model: nn.Module, output: str | None, layer: str, obs: Any, integrate_steps: int = 10, *,
             score_fn: Callable[[torch.Tensor], torch.Tensor] | None = None, batch_size: int = 512,
             device: Any = None, progress: bool = False):
    """Integrated-gradient attribution of ``output`` (e.g. ``"fc_value"``) to ``layer``'s activations.

    lucid semantics: the baseline is ZERO ACTIVATIONS AT ``layer``; right Riemann sum with ``integrate_steps`` steps
    (alphas 1/n ... 1); ``layer="input"`` gives the plain gradient. ``score_fn`` reduces a multi-element output to one
    score per observation (keep the batch dimension), e.g. ``lambda logits: logits[:, 2]``.
    Returns the layer's layout ``[B, C, H, W]`` (numpy in -> numpy out). See :func:`xrl.attribution.integrated_gradients`.
    The model runs in eval mode (modes restored afterwards, BatchNorm statistics untouched). ``progress=True`` shows
    a progress bar (observations done).
    """
    dev = resolve_device(device, model)
    x, is_numpy = to_tensor("obs", obs, dev, model)
    _check_obs(model, x)
    res = integrated_gradients(model, x, layer, output, score_fn=score_fn, n_steps=integrate_steps,
                               batch_size=batch_size, device=dev, progress=progress)
    return res.cpu().numpy() if is_numpy else res


class _Stop(Exception):
    pass


@dataclass(frozen=True)
class ReceptiveField:
    """Geometry of a conv layer's units in input pixels.

    The centre of unit ``(i, j)`` lies at continuous input coordinates ``offset + (i, j) * stride`` (pixel ``p`` spans
    ``[p, p + 1)``); ``size`` is the extent of its receptive field. ``measured`` is False when the geometry fell back to
    the ratio of input to activation size (lucid's estimate).
    """
    stride: tuple[float, float]
    offset: tuple[float, float]
    size: tuple[int, int]
    measured: bool = True


def receptive_field(model: nn.Module, layer: str, obs_shape: tuple[int, ...], *, device: Any = None,
                    canvas_pad: int = 64, n_probe: int = 4, seed: int = 0) -> ReceptiveField:
    """Measure the receptive field of ``layer``'s units from input gradients on an enlarged canvas.

    The input is padded by ``canvas_pad`` pixels per side (the forward pass stops at ``layer``, so later layers may
    require the original size), the gradient of one central unit's channels with respect to ``n_probe`` random inputs
    marks its receptive field, and the shift between two neighbouring units gives the stride.
    Falls back to input size / activation size (lucid) when the model cannot take the canvas. The model runs in eval
    mode (modes restored afterwards); the probes come from a generator seeded with ``seed``.
    """
    with eval_mode(model):
        return _receptive_field(model, layer, obs_shape, device, canvas_pad, n_probe, seed)


def _receptive_field(model, layer, obs_shape, device, canvas_pad, n_probe, seed) -> ReceptiveField:
    dev = resolve_device(device, model)
    if len(tuple(obs_shape)) != 3 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in obs_shape):
        raise ValueError(error_message("obs_shape", "(C, H, W) with positive integer sizes", tuple(obs_shape)))
    C, H, W = (int(v) for v in obs_shape)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    name = resolve_layer_name(model, layer)
    mod = model.get_submodule(name)
    gen = torch.Generator().manual_seed(seed)

    # callers to try: the model, then the ancestors of the layer (a model may check its input size; the embedder
    # that holds the conv stack usually does not)
    parts = name.split(".")
    callers = [model] + [model.get_submodule(".".join(parts[:k])) for k in range(1, len(parts))]

    def acts_for(x, caller):
        store = {}

        def hook(_m, _i, out):
            store["a"] = first_tensor(out)
            raise _Stop
        h = mod.register_forward_hook(hook)
        try:
            caller(x)
        except _Stop:
            pass
        finally:
            h.remove()
        return store["a"]

    with torch.no_grad():
        small = acts_for(torch.zeros(1, C, H, W, device=dev, dtype=dtype), model)
    ah, aw = small.shape[-2:]
    fallback = ReceptiveField((H / ah, W / aw), (H / ah / 2, W / aw / 2), (int(np.ceil(H / ah)), int(np.ceil(W / aw))),
                              measured=False)
    if small.ndim != 4:
        return fallback
    boxes = None
    P = canvas_pad
    for _attempt in range(4):  # grow the canvas until the receptive field does not touch its border
        x = torch.rand(n_probe, C, H + 2 * P, W + 2 * P, generator=gen).to(dev, dtype).requires_grad_(True)
        boxes = None
        for caller in callers:
            try:
                with torch.enable_grad():
                    a = acts_for(x, caller)
                    ch, cw = a.shape[-2] // 2, a.shape[-1] // 2
                    boxes = []
                    for di, dj in ((0, 0), (1, 1)):
                        (g,) = torch.autograd.grad(a[:, :, ch + di, cw + dj].abs().sum(), x, retain_graph=True)
                        mask = g.abs().sum((0, 1)) > 0
                        ys, xs = torch.nonzero(mask, as_tuple=True)
                        boxes.append((int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())))
                break
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError):
                boxes = None
        if boxes is None:
            break
        touches = any(b[0] == 0 or b[2] == 0 or b[1] == H + 2 * P - 1 or b[3] == W + 2 * P - 1 for b in boxes)
        if not touches:
            break
        P *= 2
    if boxes is None:
        return fallback
    (y0, y1, x0, x1), (y0b, y1b, x0b, x1b) = boxes
    sh = ((y0b + y1b) - (y0 + y1)) / 2 or H / ah
    sw = ((x0b + x1b) - (x0 + x1)) / 2 or W / aw
    # centre of unit (ch, cw) in canvas coordinates -> offset of unit 0 in original coordinates
    cy, cx = (y0 + y1 + 1) / 2, (x0 + x1 + 1) / 2
    # the canvas shifts unit indices by P / stride (exact when the stride divides the padding)
    oy = cy - P - (ch - P / sh) * sh
    ox = cx - P - (cw - P / sw) * sw
    return ReceptiveField((float(sh), float(sw)), (float(oy), float(ox)), (y1 - y0 + 1, x1 - x0 + 1), measured=True)
