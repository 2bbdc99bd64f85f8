"""Model editing with NMF directions: project a direction out of the kernel of the layer that reads it.

The paper ("Understanding RL Vision", Hilton et al. 2020) blinds a CoinRun agent to buzzsaws by editing the next
convolution's kernel so that it sees ``a - d d^T a`` instead of the activations ``a`` (``d`` the unit-norm NMF
direction): ``W'[o, :, i, j] = W[o, :, i, j] - d (d . W[o, :, i, j])``. The edit is exact for the consumer whose weights
are changed; other paths from the layer (e.g. residual skips) are untouched, so edit the input of a layer whose only
reader is that consumer (the block outputs of the IMPALA CNN: ``embedder.block1`` -> ``embedder.block2.conv``).
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from xrl._utils import eval_mode, resolve_device
from xrl.attribution import to_tensor
from xrl._validation import error_message, suggest
from xrl.hooks import first_tensor, resolve_layer_name

__all__ = ["get_var", "ParameterEditor", "find_consumer", "project_out_direction"]


def _param_names(model: nn.Module) -> dict[str, str]:
    table = {}
    for name, _ in model.named_parameters():
        table[name] = name
        table.setdefault(name.replace(".", "_"), name)
    return table


def _resolve_param(model: nn.Module, name: str) -> str:
    table = _param_names(model)
    if name in table:
        return table[name]
    # a module name means its weight
    for cand in (name + ".weight", name + "_weight"):
        if cand in table:
            return table[cand]
    hint = suggest(name, list(table), n=5)
    raise ValueError(error_message("name", "a parameter name (e.g. 'embedder.block3.conv.weight') or a module with a "
                                   "weight", name, hint or "list them with [n for n, _ in model.named_parameters()]"))


def get_var(model: nn.Module, name: str) -> np.ndarray:
    """A copy of a parameter as numpy (``name``: dotted/underscore parameter name, or a module name for its weight)."""
    p = dict(model.named_parameters())[_resolve_param(model, name)]
    return p.detach().cpu().numpy().copy()


class ParameterEditor:
    """Read and overwrite a model's parameters by name, in place (lucid's ``ParameterEditor`` for torch modules).

    ``kernel_layout="hwio"`` (default) presents 4-d conv weights as TensorFlow/lucid kernels ``[kh, kw, in, out]`` so
    that seed 003's edit formula runs unchanged; use ``"oihw"`` for the torch layout.

    >>> editor = ParameterEditor(nn.Conv2d(2, 3, 3))
    >>> editor["weight"].shape
    (3, 3, 2, 3)
    """

    def __init__(self, model: nn.Module, kernel_layout: str = "hwio"):
        if kernel_layout not in ("hwio", "oihw"):
            raise ValueError(error_message("kernel_layout", "'hwio' or 'oihw'", kernel_layout))
        self.model = model
        self.kernel_layout = kernel_layout

    def _param(self, name: str) -> nn.Parameter:
        return dict(self.model.named_parameters())[_resolve_param(self.model, name)]

    def __getitem__(self, name: str) -> np.ndarray:
        a = self._param(name).detach().cpu().numpy().copy()
        if a.ndim == 4 and self.kernel_layout == "hwio":
            a = a.transpose(2, 3, 1, 0)                                 # [O, I, kh, kw] -> [kh, kw, I, O]
        return a

    def __setitem__(self, name: str, value: Any) -> None:
        p = self._param(name)
        try:
            v = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise TypeError(error_message(f"value for {name!r}", "a numeric array", type(value).__name__)) from exc
        if not np.isfinite(v).all():
            raise ValueError(error_message(f"value for {name!r}", "finite values", v,
                                           f"{int((~np.isfinite(v)).sum())} entries are NaN or inf"))
        if v.ndim == 4 and self.kernel_layout == "hwio":
            v = v.transpose(3, 2, 0, 1)                                 # [kh, kw, I, O] -> [O, I, kh, kw]
        if tuple(v.shape) != tuple(p.shape):
            raise ValueError(error_message(f"value for {name!r}", f"shape {tuple(self[name].shape)}", v))
        with torch.no_grad():
            p.copy_(torch.from_numpy(np.ascontiguousarray(v)).to(p.device, p.dtype))


def find_consumer(model: nn.Module, layer: str, example_obs: torch.Tensor) -> str:
    """The Conv2d/Linear module whose input is exactly ``layer``'s output (same storage), found by one forward pass
    (eval mode, modes restored, no gradients)."""
    name = resolve_layer_name(model, layer)
    src = model.get_submodule(name)
    seen: dict[str, Any] = {}
    found: list[str] = []
    handles = []

    def out_hook(_m, _i, out):
        seen["ptr"] = first_tensor(out).data_ptr()

    def make_in_hook(mname):
        def hook(_m, inputs):
            if "ptr" in seen and inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].data_ptr() == seen["ptr"]:
                found.append(mname)
        return hook

    try:
        handles.append(src.register_forward_hook(out_hook))
        for mname, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and mname != name:
                handles.append(m.register_forward_pre_hook(make_in_hook(mname)))
        with torch.no_grad(), eval_mode(model):
            model(example_obs)
    finally:
        for h in handles:
            h.remove()
    if not found:
        raise ValueError(error_message("layer", "a layer whose output feeds a Conv2d or Linear module directly", layer,
                                       "pass next_layer= explicitly (the conv that reads the activations)"))
    return found[0]


def _unit_direction(direction: Any) -> torch.Tensor:
    """``direction`` as a unit float32 vector [C], or a clear error (not a vector, NaN/inf, zero)."""
    raw = direction.detach().cpu().numpy() if isinstance(direction, torch.Tensor) else np.asarray(direction)
    if raw.dtype == object or not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
        raise TypeError(error_message("direction", "a numeric vector [C] (e.g. LayerNMF.channel_dirs[k])", raw))
    if raw.ndim != 1 and not (raw.ndim == 2 and 1 in raw.shape):
        raise ValueError(error_message("direction", "one vector [C] (e.g. LayerNMF.channel_dirs[k])", raw,
                                       "pick one row of a matrix of directions"))
    d = torch.from_numpy(raw.astype(np.float32).reshape(-1))
    if not bool(torch.isfinite(d).all()):
        raise ValueError(error_message("direction", "finite values", raw, f"{int((~torch.isfinite(d)).sum())} "
                                       "entries are NaN or inf; the edit would fill the kernel with NaN"))
    nrm = float(d.norm())
    if nrm == 0:
        raise ValueError(error_message("direction", "a non-zero vector", raw))
    return d / nrm


def project_out_direction(model: nn.Module, layer: str, direction: Any, *, next_layer: str | None = None,
                          example_obs: Any = None, inplace: bool = False) -> nn.Module:
    """A copy of ``model`` whose ``next_layer`` ignores the component of ``layer``'s activations along ``direction``.

    Parameters
    ----------
    layer : str
        The layer the direction lives in (its channel space), e.g. ``"embedder.block1"``.
    direction : array [C]
        E.g. ``LayerNMF.channel_dirs[k]``; normalised here.
    next_layer : str, optional
        The Conv2d (or Linear over the flattened map) that reads ``layer``; found automatically from one forward pass
        on ``example_obs`` when omitted.
    inplace : bool, default False
        Edit ``model`` itself instead of a deep copy.

    Returns
    -------
    The edited model (attribute ``edit_info`` holds the layer names and the direction).
    """
    d = _unit_direction(direction)
    if next_layer is None:
        if example_obs is None:
            raise ValueError(error_message("example_obs", "observations to trace the consumer of the layer when "
                                           "next_layer is not given", None))
        x, _ = to_tensor("example_obs", example_obs, resolve_device(None, model), model)
        next_layer = find_consumer(model, layer, x[:2])
    nxt_name = resolve_layer_name(model, next_layer)
    edited = model if inplace else copy.deepcopy(model)
    mod = edited.get_submodule(nxt_name)
    with torch.no_grad():
        if isinstance(mod, nn.Conv2d):
            W = mod.weight                                              # [O, I, kh, kw]
            if W.shape[1] != d.numel() or mod.groups != 1:
                raise ValueError(error_message("direction", f"{W.shape[1]} channels (the input channels of "
                                               f"{nxt_name!r})", direction))
            dd = d.to(W.device, W.dtype).view(1, -1, 1, 1)
            W -= dd * (dd * W).sum(1, keepdim=True)
        elif isinstance(mod, nn.Linear):
            W = mod.weight                                              # [O, C*h*w] over a flattened [C, h, w] map
            C = d.numel()
            if W.shape[1] % C:
                raise ValueError(error_message("direction", f"a channel count dividing {W.shape[1]}", direction))
            Wv = W.view(W.shape[0], C, -1)                              # [O, C, h*w]
            dd = d.to(W.device, W.dtype).view(1, -1, 1)
            Wv -= dd * (dd * Wv).sum(1, keepdim=True)
        else:
            raise ValueError(error_message("next_layer", "a Conv2d or Linear module", type(mod).__name__))
    edited.edit_info = {"layer": resolve_layer_name(model, layer), "next_layer": nxt_name,
                        "direction": d.numpy().copy()}
    return edited
