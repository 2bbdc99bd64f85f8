"""Which layers a page explains: every conv block output by default, or the user's names checked up front."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from xrl._validation import error_message
from xrl.hooks import first_tensor, resolve_layer_name

__all__ = ["conv_block_layers", "check_layers", "layer_shapes"]

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh,
                nn.Sigmoid, nn.Hardswish, nn.Hardtanh, nn.PReLU)
_LEAF_STAGES = (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.Dropout2d)


def _traced_outputs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape) of every submodule, in the order their forward passes finish."""
    order: list[tuple[str, tuple[int, ...]]] = []
    handles = []

    def make_hook(name):
        def hook(_m, _i, out):
            t = first_tensor(out)
            if isinstance(t, torch.Tensor):
                order.append((name, tuple(t.shape)))
        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(make_hook(name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    seen, unique = set(), []
    for name, shape in order:
        if name not in seen:
            seen.add(name)
            unique.append((name, shape))
    return unique


def layer_shapes(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Output shape (without the batch) of every submodule for ``example`` [1, C, H, W]."""
    return {name: shape[1:] for name, shape in _traced_outputs(model, example)}


def conv_block_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The outputs of the convolutional blocks of ``model``, in forward order.

    A block output is a module with a spatial ``[B, C, h, w]`` output whose parent's output is not spatial (the
    stages of the conv stack, e.g. ``embedder.block1..3`` of the IMPALA CNN, or the layers of an SB3 NatureCNN
    ``Sequential``). Within a stack of single layers an activation replaces the convolution it follows (lucid took
    the ReLU outputs); after a whole block (a module with children) a trailing activation of the same shape is
    dropped as a repeat of the block (``embedder.relu_after_convs`` after ``embedder.block3``).
    """
    traced = _traced_outputs(model, example)
    shapes = dict(traced)
    modules = dict(model.named_modules())

    def spatial(name: str) -> bool:
        return name in shapes and len(shapes[name]) == 4

    candidates = []
    for name, _shape in traced:
        if not spatial(name):
            continue
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        if parent and spatial(parent):
            continue
        candidates.append(name)
    chosen: list[str] = []
    for name in candidates:
        module = modules[name]
        if chosen and isinstance(module, _ACTIVATIONS) and shapes[chosen[-1]] == shapes[name]:
            prev = modules[chosen[-1]]
            if isinstance(prev, _LEAF_STAGES):
                chosen[-1] = name            # conv -> relu: the activation is the stage's output
            continue                         # block -> relu: a repeat of the block
        if chosen and isinstance(module, _LEAF_STAGES) and isinstance(modules[chosen[-1]], _LEAF_STAGES):
            chosen[-1] = name                # conv -> batch norm: the later one
            continue
        chosen.append(name)
    return chosen


def check_layers(model: nn.Module, layers: Sequence[str] | str | None, example: torch.Tensor) -> list[str]:
    """Resolve ``layers`` to dotted names of convolutional layers (``None``: :func:`conv_block_layers`).

    Raises
    ------
    ValueError
        A name that is no submodule (with close matches), a layer whose output is not ``[B, C, h, w]``, repeats, or
        an empty list.
    """
    if layers is None:
        found = conv_block_layers(model, example)
        if not found:
            raise ValueError(error_message("layers", "a model with convolutional layers", type(model).__name__,
                                           "the interface explains conv layers ([B, C, h, w] outputs)"))
        return found
    if isinstance(layers, str):
        layers = [s for s in (p.strip() for p in layers.split(",")) if s]
    layers = list(layers)
    if not layers:
        raise ValueError(error_message("layers", "at least one layer name", layers))
    shapes = layer_shapes(model, example)
    resolved: list[str] = []
    for layer in layers:
        name = resolve_layer_name(model, layer)
        if name not in shapes or len(shapes[name]) != 3:
            blocks = ", ".join(conv_block_layers(model, example))
            raise ValueError(error_message("layers", "convolutional layers with [B, C, h, w] outputs", layer,
                                           f"its output has shape {shapes.get(name, 'unknown')}; conv block outputs "
                                           f"are: {blocks}"))
        if name in resolved:
            raise ValueError(error_message("layers", "distinct layer names", layers, f"{name!r} is repeated"))
        resolved.append(name)
    return resolved
