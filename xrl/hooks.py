"""THE layer access: list, resolve, capture and patch the outputs of a model's submodules.

Every capability that reads or overrides a hidden layer (vision, attribution, world-model explanations) goes through
this module, so that naming rules, error messages and hook clean-up are the same everywhere:

- a layer is named by its dotted module path (``"embedder.block2.res1"``, as in ``model.named_modules()``) or by the
  underscore form used by lucent and seed 003 (``"embedder_block2_res1"``); both resolve to the same module;
- an unknown name raises ``ValueError`` listing the closest valid names;
- hooks are removed when the ``with`` block ends, also when it ends with an exception.

Example
-------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
>>> with capture(net, ["0", "1"]) as acts:
...     _ = net(torch.zeros(2, 1, 5, 5))
>>> tuple(acts["1"].shape)
(2, 4, 3, 3)
"""
from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from xrl._validation import error_message, suggest

__all__ = [
    "INPUT",
    "layer_names",
    "get_layer",
    "resolve_layer_name",
    "get_model_layers",
    "get_abbreviator",
    "capture",
    "patch",
    "first_tensor",
]

#: Pseudo-layer name for the model input (accepted where a layer may be the input, e.g. attribution to pixels).
INPUT = "input"


def layer_names(model: nn.Module) -> list[str]:
    """Dotted names of every submodule of ``model`` in registration order (the root module itself excluded)."""
    return [name for name, _ in model.named_modules() if name]


def get_model_layers(model: nn.Module, getLayerRepr: bool = False) -> list[str] | "OrderedDict[str, str]":  # noqa: N803
    """Underscore-joined submodule names, as lucent's ``get_model_layers`` (used by seed 003).

    With ``getLayerRepr=True`` returns an ordered mapping ``name -> repr(module)``.
    """
    names = [name.replace(".", "_") for name in layer_names(model)]
    if getLayerRepr:
        modules = [m for k, m in model.named_modules() if k]
        return OrderedDict((n, repr(m)) for n, m in zip(names, modules))
    return names


def get_abbreviator(names: Sequence[str]) -> slice:
    """A slice that strips the path prefix and suffix shared by all ``names`` (lucid's rl_util helper).

    Only whole path components separated by ``/`` or ``.`` are stripped, so ``[name[abbreviator] for name in names]``
    stays unique. With fewer than two names nothing is stripped.
    """
    names = list(names)
    if len(names) <= 1:
        return slice(None, None)

    def last_sep(text: str) -> int:
        return max(text.rfind("/"), text.rfind("."))

    prefix = os.path.commonprefix(names)
    cut = last_sep(prefix)
    start = cut + 1 if cut >= 0 else 0
    rev_suffix = os.path.commonprefix([n[::-1] for n in names])
    cut = last_sep(rev_suffix)
    stop = -(cut + 1) if cut >= 0 else None
    return slice(start, stop)


def _table(model: nn.Module) -> dict[str, str]:
    """Every accepted spelling -> dotted name."""
    table: dict[str, str] = {}
    ambiguous: set[str] = set()
    for name in layer_names(model):
        table[name] = name
    for name in layer_names(model):
        alias = name.replace(".", "_")
        if alias in table and table[alias] != name:
            ambiguous.add(alias)
        else:
            table.setdefault(alias, name)
    for alias in ambiguous:
        if alias not in layer_names(model):
            table.pop(alias, None)
    return table


def resolve_layer_name(model: nn.Module, name: str, *, allow_input: bool = False) -> str:
    """The dotted module name for ``name`` (dotted or underscore form); ``"input"`` is kept when ``allow_input``."""
    if not isinstance(name, str):
        raise TypeError(error_message("layer", "a layer name (str)", name, "list valid names with xrl.hooks.layer_names(model)"))
    if allow_input and name == INPUT:
        return INPUT
    table = _table(model)
    if name in table:
        return table[name]
    valid = layer_names(model)
    hint = suggest(name, list(table), n=5)
    shown = ", ".join(valid[:12]) + (", ..." if len(valid) > 12 else "")
    raise ValueError(error_message(
        "layer", f"the name of a submodule of {type(model).__name__}" + (" or 'input'" if allow_input else ""), name,
        (hint + " " if hint else "") + f"valid names include: {shown}"))


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (dotted ``"a.b"`` or underscore ``"a_b"``); ``ValueError`` with suggestions if unknown."""
    return model.get_submodule(resolve_layer_name(model, name))


def first_tensor(output: Any) -> torch.Tensor:
    """The tensor a layer produced: the output itself, or the first tensor of a tuple/list output."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(error_message("layer output", "a tensor or a tuple holding one", type(output).__name__))


class _Captured(dict):
    """Activations recorded by :func:`capture`, keyed by the names the caller used."""


@contextlib.contextmanager
def capture(model: nn.Module, layers: str | Sequence[str], *, detach: bool = True) -> Iterator[_Captured]:
    """Record the outputs of ``layers`` during the forward passes run inside the ``with`` block.

    Parameters
    ----------
    model : nn.Module
    layers : str or sequence of str
        Layer names (dotted or underscore form). The model output itself can be captured by running the model.
    detach : bool, default True
        Store detached tensors (set False to keep the graph, e.g. to differentiate a captured activation).

    Yields
    ------
    dict
        ``name -> tensor``; a layer run several times in one block keeps its last output, and ``name + "#all"`` is not
        kept (run one forward pass per block when that matters).
    """
    if isinstance(layers, str):
        layers = [layers]
    resolved = [(name, resolve_layer_name(model, name)) for name in layers]
    store = _Captured()
    handles = []
    try:
        for name, dotted in resolved:
            def hook(_mod, _inp, out, _name=name):
                t = first_tensor(out)
                store[_name] = t.detach() if detach else t
            handles.append(model.get_submodule(dotted).register_forward_hook(hook))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def patch(model: nn.Module, layer: str, replacement: torch.Tensor | Callable[[torch.Tensor], torch.Tensor]
          ) -> Iterator[_Captured]:
    """Replace a layer's output inside the ``with`` block.

    Parameters
    ----------
    layer : str
        Layer name (dotted or underscore form).
    replacement : tensor or callable
        A tensor of the output's shape to return instead (it may have a different batch size when no later layer mixes
        the layer's output with tensors computed before it), or ``fn(original_output) -> new_output``.

    Yields
    ------
    dict
        ``{"original": the layer's original output (detached), "patched": the tensor passed on}`` of the last call.
    """
    dotted = resolve_layer_name(model, layer)
    store = _Captured()

    def hook(_mod, _inp, out):
        orig = first_tensor(out)
        new = replacement(orig) if callable(replacement) else replacement
        if not isinstance(new, torch.Tensor):
            raise TypeError(error_message("replacement", "a tensor (or a callable returning one)", type(new).__name__))
        if new.shape[1:] != orig.shape[1:]:
            raise ValueError(error_message(f"replacement for layer {layer!r}", f"shape [*, {', '.join(map(str, orig.shape[1:]))}]",
                                           new))
        store["original"] = orig.detach()
        store["patched"] = new
        if isinstance(out, torch.Tensor):
            return new
        items = list(out)
        for i, item in enumerate(items):
            if isinstance(item, torch.Tensor):
                items[i] = new
                break
        return type(out)(items) if isinstance(out, tuple) else items

    handle = model.get_submodule(dotted).register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()
