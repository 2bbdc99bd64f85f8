"""Graph rewrites that keep a frozen convolution net's function and make it cheaper to evaluate (``xrl._inference``).

Two patterns common in small CNNs and autoencoders, rewritten with ``torch.fx`` on a copy of the call graph (the
user's module is never modified; the rewritten graph shares its parameters):

* ``max_pool2d(relu(x))`` -> ``relu(max_pool2d(x))``: ReLU is monotone, so both give the same bits; the ReLU then
  reads a quarter of the data (seed 000's classifier: 1.4 ms of its 12 ms per 100 images was that ReLU).
* ``conv2d(upsample_nearest(x, s))`` -> ``pixel_shuffle(conv2d(x, W'), s)``: each of the ``s * s`` output phases of
  a convolution over a nearest-upsampled image is a small convolution over the original image whose taps are sums of
  the original taps, so the upsampled image is never built. Same function; sums of weights round differently (seed
  000's decoder: outputs within 1e-6, 2x faster).
* ``[relu](max_pool2d(conv2d(x)))`` -> one :class:`ConvPool2d` call of the compiled kernel ``xrl._kernels``
  (opt-in, no-gradient passes only; conv stride 1, pooling kernel = stride, output channels a multiple of 8): the
  convolution output is never written out (seed 000's classifier: 18.4 -> 13.3 ms per 100 images, one thread).

Anything the tracer or a pattern check does not understand is left as it was.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import _kernels

_RELU_FUNCS = {F.relu, torch.relu, torch.relu_}
_POOL_FUNCS = {F.max_pool2d, torch.max_pool2d}


def _is_relu(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELU_FUNCS and len(node.args) == 1
    return node.op == "call_method" and node.target in ("relu", "relu_") and len(node.args) == 1


def _is_max_pool(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        return type(m) is nn.MaxPool2d and not m.return_indices
    return (node.op == "call_function" and node.target in _POOL_FUNCS
            and not node.kwargs.get("return_indices", False) and not (len(node.args) > 6 and node.args[6]))


def pool_before_relu(gm: fx.GraphModule) -> int:
    """Swap every ``relu -> max_pool2d`` pair whose intermediate results feed nothing else; returns the count."""
    count = 0
    for pool in list(gm.graph.nodes):
        if not _is_max_pool(gm, pool) or not pool.args or not isinstance(pool.args[0], fx.Node):
            continue
        relu = pool.args[0]
        if not _is_relu(gm, relu) or len(relu.users) != 1 or not isinstance(relu.args[0], fx.Node):
            continue
        source = relu.args[0]
        if len(source.users) != 1:  # an in-place ReLU would also have changed what the other users see
            continue
        pool.args = (source, *pool.args[1:])
        with gm.graph.inserting_after(pool):
            new_relu = gm.graph.create_node(relu.op, relu.target, (pool,), dict(relu.kwargs))
        pool.replace_all_uses_with(new_relu, delete_user_cb=lambda user: user is not new_relu)
        gm.graph.erase_node(relu)
        count += 1
    return count


def _nearest_scale(gm: fx.GraphModule, node: fx.Node) -> int | None:
    """The integer scale of a nearest-neighbour 2-d upsampling node applied to one input, else None."""
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        if type(m) not in (nn.Upsample, nn.UpsamplingNearest2d) or m.mode != "nearest" or m.size is not None:
            return None
        scale = m.scale_factor
    elif node.op == "call_function" and node.target is F.interpolate:
        kw = dict(node.kwargs)
        if len(node.args) != 1 or kw.pop("mode", "nearest") != "nearest" or kw.pop("size", None) is not None:
            return None
        scale = kw.pop("scale_factor", None)
        kw.pop("recompute_scale_factor", None)
        if kw.pop("align_corners", None) is not None or kw.pop("antialias", False) or kw:
            return None
    else:
        return None
    if isinstance(scale, (tuple, list)):
        if len(scale) != 2 or scale[0] != scale[1]:
            return None
        scale = scale[0]
    if not isinstance(scale, (int, float)) or scale != int(scale) or int(scale) < 2:
        return None
    return int(scale)


def _phase_taps(k: int, s: int, p: int) -> tuple[list[list[int]], int, int]:
    """For a kernel of ``k`` taps with zero padding ``p`` over an ``s``-times upsampled axis: the source offset of
    each tap in each output phase, the smallest offset, and the number of distinct offsets."""
    offsets = [[(phase - p + t) // s for t in range(k)] for phase in range(s)]
    lo = min(min(o) for o in offsets)
    hi = max(max(o) for o in offsets)
    return offsets, lo, hi - lo + 1


class PhaseConv2d(nn.Module):
    """``conv(upsample_nearest(x, scale))`` computed as ``pixel_shuffle(conv(x, W'), scale)`` (see module doc).

    The phase weights are derived from ``conv``'s weights; :meth:`refresh` re-derives them after ``conv`` changed
    (frozen-network inference: ``xrl._inference`` calls it when a parameter's version changes). No gradients reach
    ``conv``.
    """

    def __init__(self, conv: nn.Conv2d, scale: int) -> None:
        super().__init__()
        object.__setattr__(self, "source", conv)  # a reference, not a submodule: the graph no longer calls it
        self.scale = scale
        kh, kw = conv.kernel_size
        (self._off_h, lo_h, dh), (self._off_w, lo_w, dw) = (_phase_taps(kh, scale, conv.padding[0]),
                                                           _phase_taps(kw, scale, conv.padding[1]))
        self._geometry = (kh, kw, conv.padding, (lo_h, lo_w), (dh, dw))
        self.register_buffer("weight", None)
        self.register_buffer("bias", None)
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        w, s = self.source.weight.detach(), self.scale
        cout, cin, kh, kw = w.shape
        _, _, _, (lo_h, lo_w), (dh, dw) = self._geometry
        weight = w.new_zeros(cout, s, s, cin, dh, dw)
        for ph in range(s):
            for pw in range(s):
                for th in range(kh):
                    for tw in range(kw):
                        weight[:, ph, pw, :, self._off_h[ph][th] - lo_h, self._off_w[pw][tw] - lo_w] += w[:, :, th, tw]
        # channels-last: the faster layout for these small CPU convolutions (this class is only used on CPU)
        self.weight = weight.reshape(cout * s * s, cin, dh, dw).contiguous(memory_format=torch.channels_last)
        bias = self.source.bias
        self.bias = None if bias is None else bias.detach().repeat_interleave(s * s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale
        (kh, kw, (p_h, p_w), (lo_h, lo_w), (dh, dw)) = self._geometry
        out_h, out_w = s * x.shape[-2] + 2 * p_h - kh + 1, s * x.shape[-1] + 2 * p_w - kw + 1
        m_h, m_w = -(-out_h // s), -(-out_w // s)  # positions per phase (the last ones cropped below if unequal)
        pad = (-lo_w, m_w + dw - 1 - x.shape[-1] + lo_w, -lo_h, m_h + dh - 1 - x.shape[-2] + lo_h)
        if pad[0] == pad[1] and pad[2] == pad[3] and min(pad) >= 0:
            y = F.conv2d(x, self.weight, self.bias, padding=(pad[2], pad[0]))
        else:
            y = F.conv2d(F.pad(x, pad), self.weight, self.bias)
        y = _pixel_shuffle(y, s)
        return y if (y.shape[-2], y.shape[-1]) == (out_h, out_w) else y[..., :out_h, :out_w]


def _pixel_shuffle(y: torch.Tensor, s: int) -> torch.Tensor:
    """``F.pixel_shuffle``; for one output channel of a channels-last tensor a strided copy (seed 000's decoder output,
    100 x 4 x 14 x 14 -> 100 x 1 x 28 x 28: 0.17 vs 0.71 ms on 2 cores)."""
    n, c, h, w = y.shape
    if c != s * s or not y.is_contiguous(memory_format=torch.channels_last):
        return F.pixel_shuffle(y, s)
    # memory holds [n, h, w, s, s]; the output [n, 1, h * s, w * s] is that read as [n, h, s, w, s]
    return y.permute(0, 2, 3, 1).reshape(n, h, w, s, s).permute(0, 1, 3, 2, 4).reshape(n, 1, h * s, w * s)


def _foldable_conv(gm: fx.GraphModule, node: fx.Node) -> nn.Conv2d | None:
    if node.op != "call_module":
        return None
    conv = gm.get_submodule(node.target)
    if (type(conv) is not nn.Conv2d or conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1
            or conv.padding_mode != "zeros" or isinstance(conv.padding, str) or len(node.args) != 1):
        return None
    return conv


def fold_upsample_into_conv(gm: fx.GraphModule) -> int:
    """Replace every ``upsample_nearest -> Conv2d`` pair (the upsampled image feeding only that convolution) by a
    :class:`PhaseConv2d`; returns the count."""
    count = 0
    for conv_node in list(gm.graph.nodes):
        conv = _foldable_conv(gm, conv_node)
        up = conv_node.args[0] if conv is not None else None
        if not isinstance(up, fx.Node) or len(up.users) != 1:
            continue
        scale = _nearest_scale(gm, up)
        if scale is None or not isinstance(up.args[0], fx.Node):
            continue
        name = f"_xrl_phase_conv_{count}"
        gm.add_submodule(name, PhaseConv2d(conv, scale))
        with gm.graph.inserting_before(conv_node):
            new = gm.graph.call_module(name, (up.args[0],))
        conv_node.replace_all_uses_with(new)
        gm.graph.erase_node(conv_node)
        gm.graph.erase_node(up)
        count += 1
    return count


class ConvPool2d(nn.Module):
    """``max_pool2d(conv(x), pool)`` (then ReLU if ``relu``) in one pass of the compiled kernel (``xrl._kernels``) for
    CPU float32 inputs; anything else runs torch's ops. No gradients: for frozen-network inference only.
    :meth:`refresh` re-packs the weights after ``conv`` changed (``xrl._inference`` calls it)."""

    def __init__(self, conv: nn.Conv2d, pool: int, relu: bool) -> None:
        super().__init__()
        object.__setattr__(self, "source", conv)  # a reference, not a submodule: the graph no longer calls it
        self.pool, self.relu = pool, relu
        self.register_buffer("weight", None)
        self.register_buffer("bias", None)
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        conv = self.source
        self.weight = _kernels.pack_weight(conv.weight)
        self.bias = (conv.bias.detach().float().clone() if conv.bias is not None
                     else conv.weight.new_zeros(conv.out_channels, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.source
        if x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and not torch.is_grad_enabled():
            (kh, kw), (ph, pw) = conv.kernel_size, conv.padding
            return _kernels.conv_pool2d(x, self.weight, self.bias, kh, kw, ph, pw, self.pool, self.relu)
        return _kernels.reference(x, conv.weight, conv.bias, conv.padding, self.pool, self.relu)


def _pool_size(gm: fx.GraphModule, node: fx.Node) -> int | None:
    """The kernel size of a max-pooling node whose stride equals its kernel (no padding, dilation or ceil mode)."""
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        if len(node.args) != 1 or node.kwargs:
            return None
        k, stride, pad, dil, ceil = m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode
    else:
        names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
        given = dict(zip(names, node.args[1:])) | dict(node.kwargs)
        if set(given) - set(names) or "kernel_size" not in given:
            return None
        k = given["kernel_size"]
        stride, pad, dil, ceil = (given.get("stride"), given.get("padding", 0), given.get("dilation", 1),
                                  given.get("ceil_mode", False))
        stride = k if stride is None or stride == [] or stride == () else stride

    def one(v):  # an int, or a pair of equal ints
        if isinstance(v, (tuple, list)):
            return v[0] if len(v) == 2 and v[0] == v[1] and isinstance(v[0], int) else None
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    k, stride, pad, dil = one(k), one(stride), one(pad), one(dil)
    if k is None or k < 1 or stride != k or pad != 0 or dil != 1 or ceil is not False:
        return None
    return k


def fuse_conv_pool(gm: fx.GraphModule) -> int:
    """Replace every ``Conv2d -> max_pool2d [-> relu]`` chain (each result feeding only the next) that the compiled
    kernel supports by a :class:`ConvPool2d`; returns the count."""
    count = 0
    for pool_node in list(gm.graph.nodes):
        if not _is_max_pool(gm, pool_node) or not pool_node.args or not isinstance(pool_node.args[0], fx.Node):
            continue
        conv_node = pool_node.args[0]
        conv = _foldable_conv(gm, conv_node)
        size = _pool_size(gm, pool_node)
        if (conv is None or size is None or len(conv_node.users) != 1 or not isinstance(conv_node.args[0], fx.Node)
                or not _kernels.supported(conv.in_channels, conv.out_channels)):
            continue
        users = list(pool_node.users)
        relu = users[0] if len(users) == 1 and _is_relu(gm, users[0]) else None
        last = relu or pool_node
        name = f"_xrl_conv_pool_{count}"
        gm.add_submodule(name, ConvPool2d(conv, size, relu is not None))
        with gm.graph.inserting_before(conv_node):
            new = gm.graph.call_module(name, (conv_node.args[0],))
        last.replace_all_uses_with(new)
        for node in (relu, pool_node, conv_node):
            if node is not None:
                gm.graph.erase_node(node)
        count += 1
    return count


def rewrite_for_inference(module: nn.Module, fuse_kernels: bool = False) -> tuple[nn.Module, dict[str, int]]:
    """A rewritten graph of ``module`` in eval mode (sharing its parameters) and how many of each rewrite it got.
    ``fuse_kernels`` also applies :func:`fuse_conv_pool` when the compiled kernels are available (no-gradient use).

    Returns ``(module, {})`` when the module cannot be traced symbolically or nothing applies. The graph is valid
    for eval-mode calls only (a forward that reads ``self.training`` was traced with it False). ``torch.fx`` patches
    ``nn.Module.__call__`` while it traces, so call this before other threads run modules.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        gm = fx.symbolic_trace(module)
    except Exception:  # data-dependent control flow, unsupported Python: run the module as it is
        return module, {}
    finally:
        for m, mode in modes:
            m.training = mode
    done = {"pool_before_relu": pool_before_relu(gm), "fold_upsample_into_conv": fold_upsample_into_conv(gm)}
    if fuse_kernels and _kernels.available():
        done["fuse_conv_pool"] = fuse_conv_pool(gm)
    done = {k: v for k, v in done.items() if v}
    if not done:
        return module, {}
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm, done


def refresh(module: nn.Module) -> None:
    """Re-derive the weights of every :class:`PhaseConv2d` and :class:`ConvPool2d` in ``module`` from their source
    convolutions."""
    for m in module.modules():
        if isinstance(m, (PhaseConv2d, ConvPool2d)):
            m.refresh()
