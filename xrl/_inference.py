"""Fast no-grad inference for frozen modules (the black-box predictor, the frozen encoder/decoder).

PyTorch's eager CPU kernels are slow for small convolution nets such as seed 000's MNIST classifier (an even 2x2
kernel with padding takes a slow path; max-pooling and ReLU each re-read the activations). Tracing the module and
handing it to ``torch.jit.optimize_for_inference`` runs the same arithmetic through oneDNN with fused, pre-packed
kernels: measured 3.3x faster for that classifier on a 2-core CPU, outputs equal to 1e-7 (``bench/cfrl_mnist.py``).

The optimized copy is only ever used when it is safe:

* it is checked against the eager module on the first batch it sees and on a batch of a different size (a trace can
  bake in shapes or data-dependent branches); any mismatch or failure falls back to eager for good;
* it is rebuilt when the module's parameters or buffers change (their in-place version counters are compared on
  every call, so an edited or retrained model is never served stale weights);
* it is used only under ``torch.no_grad`` for modules in eval mode; gradients always go through the eager module.

Before tracing, the module's graph gets exact rewrites (``xrl._rewrite``: ReLU after max-pooling, nearest upsampling
folded into the next convolution): seed 000's classifier 12.0 -> 10.7 ms per 100 images, its decoder 5.8 -> 3.0 ms;
then convolution + max-pooling (+ ReLU) pairs become one call of the compiled kernel of ``xrl._kernels`` when it is
available (seed 000's classifier 18.4 -> 13.3 ms per 100 images on one thread, 10.1 -> 6.8 ms on two;
``bench/inference.py``).
``torch.fx`` traces symbolically once, when the wrapper is built (it patches ``nn.Module.__call__`` meanwhile, so not
while worker threads run modules); a weight change later only re-derives the folded weights.

``torch.jit`` is deprecated in favour of ``torch.compile``, which costs about a minute of compilation per network
here and was no faster (shared/FACTS.md); when ``torch.jit`` goes away, the fallback keeps everything working.
"""
from __future__ import annotations

import copy
import threading
import warnings
from typing import Any

import torch
from torch import nn

from ._rewrite import PhaseConv2d, refresh, rewrite_for_inference

_RTOL, _ATOL = 1e-4, 1e-5


def _tensors(module: nn.Module, out: list) -> list:
    # a plain walk over the registries: 4x faster than ``parameters()`` + ``buffers()``, and it runs at every call
    out.extend(module._parameters.values())
    out.extend(module._buffers.values())
    for child in module._modules.values():
        if child is not None:
            _tensors(child, out)
    return out


def _fingerprint(module: nn.Module) -> tuple:
    return tuple((id(t), t._version, t.data_ptr()) for t in _tensors(module, []) if t is not None)


def _close(out: Any, ref: Any) -> bool:
    if isinstance(ref, (list, tuple)):
        return (isinstance(out, (list, tuple)) and len(out) == len(ref)
                and all(_close(o, r) for o, r in zip(out, ref)))
    return (isinstance(out, torch.Tensor) and isinstance(ref, torch.Tensor) and out.shape == ref.shape
            and out.dtype == ref.dtype and torch.allclose(out, ref, rtol=_RTOL, atol=_ATOL))


class InferenceModule:
    """``InferenceModule(module)(x)`` == ``module.eval()(x)`` without gradients, faster where tracing is safe.

    ``enabled=False`` (or an unsupported module/input) always runs the eager module; ``kernels=False`` keeps torch's
    kernels where ``xrl._kernels`` would fuse convolution + max-pooling. ``status`` says which path is in use and,
    after a fallback, why. ``channels_last`` is the :class:`ChannelsLastCall` it runs for modules with
    (folded) upsampling, else None.
    """

    def __init__(self, module: nn.Module, enabled: bool = True, kernels: bool = True) -> None:
        self.module = module
        self.enabled = bool(enabled)
        self._fast: Any = None
        self._key: tuple | None = None
        self._dtype: torch.dtype | None = None  # traced graphs are specialised to the input dtype
        self._checked_sizes: set[int] = set()
        self._lock = threading.Lock()  # the train/eval toggle and the lazy build are not safe to interleave
        self.status = "eager (not traced yet)" if enabled else "eager (disabled)"
        self._graph, self.rewrites = (rewrite_for_inference(module, fuse_kernels=kernels) if enabled
                                           else (module, {}))
        self.channels_last = None
        if enabled and any(isinstance(m, (nn.Upsample, PhaseConv2d)) for m in self._graph.modules()):
            # oneDNN's optimized graph leaves upsampling outside and converts layouts around it: for seed 000's decoder
            # 12.9 ms per 100 vs 5.6 ms for eager with channels-last weights (19 ms plain eager); with the upsampling
            # folded into the convolutions: 3.4 ms optimized vs 3.0 ms channels-last eager
            self.channels_last = ChannelsLastCall(module)

    def _build(self, x: torch.Tensor) -> None:
        self._fast, self._checked_sizes = None, set()
        self._key, self._dtype = _fingerprint(self.module), x.dtype
        done = ", rewritten: " + ", ".join(f"{k} x{v}" for k, v in self.rewrites.items()) if self.rewrites else ""
        if self.channels_last is not None:
            self._fast = self.channels_last
            self.status = "channels-last eager" + done
            return
        try:
            refresh(self._graph)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer warnings
                traced = torch.jit.trace(self._graph, x, check_trace=False)
                self._fast = torch.jit.optimize_for_inference(traced)
            self.status = "optimized" + done
        except Exception as exc:  # any tracing problem: stay on eager, say why
            self.enabled = False
            self.status = f"eager (trace failed: {type(exc).__name__}: {str(exc)[:120]})"

    def _check(self, x: torch.Tensor, out: Any) -> bool:
        ok = _close(out, self.module(x))
        if not ok:
            self.enabled, self._fast = False, None
            self.status = "eager (the traced module disagreed with the eager one)"
        return ok

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> Any:
        fast = self._fast
        if (fast is not None and self.enabled and not self.module.training and isinstance(x, torch.Tensor)
                and x.device.type == "cpu" and len(x) in self._checked_sizes and x.dtype == self._dtype
                and self._key == _fingerprint(self.module)):
            return fast(x)  # built and checked for this size, module in eval mode: nothing to toggle, no lock
        with self._lock:
            return self._call(x)

    def _call(self, x: torch.Tensor) -> Any:
        module = self.module
        was_training = module.training
        module.eval()
        try:
            # oneDNN is the CPU win; CUDA's eager kernels are already fused enough for these small nets
            if not self.enabled or not isinstance(x, torch.Tensor) or x.device.type != "cpu" or len(x) == 0:
                return module(x)
            if self._fast is None or self._key != _fingerprint(module) or x.dtype != self._dtype:
                self._build(x)
                if self._fast is None:
                    return module(x)
            out = self._fast(x)
            n = len(x)
            if n not in self._checked_sizes:
                if not self._check(x, out):
                    return module(x)
                self._checked_sizes.add(n)
                if len(self._checked_sizes) == 1 and n > 1:  # a second size catches batch sizes baked in
                    probe = x[: max(1, n // 2 - 1)]
                    if not self._check(probe, self._fast(probe)):
                        return module(x)
                    self._checked_sizes.add(len(probe))
            return out
        finally:
            module.train(was_training)


class ChannelsLastCall:
    """``ChannelsLastCall(module)(x)`` == ``module(x)`` for an eval-mode module, gradients flowing to ``x`` only.

    For the frozen decoder in the actor update. oneDNN runs small convolutions and their backward passes much faster
    on channels-last tensors, and a conv whose weight is channels-last returns channels-last activations, so the
    whole net follows: measured 2x faster forward + backward for seed 000's MNIST decoder on CPU; with the graph
    rewrites of ``xrl._rewrite`` (upsampling folded into the next convolution) 4x (31 -> 7.3 ms per 100 codes on 2
    threads). It runs a private copy of the module with channels-last weights (the module itself is never touched,
    and concurrent calls need no lock), refreshed when a parameter of the module changes and checked against the
    module at the first call after; any mismatch, a module in training mode, or a copy that cannot be made runs the
    module itself. CPU only.
    """

    def __init__(self, module: nn.Module, enabled: bool = True) -> None:
        self.module = module
        self.enabled = bool(enabled)
        self.rewrites: dict[str, int] = {}
        self._key: tuple | None = None
        self._verified = False
        self._lock = threading.Lock()
        self._run: nn.Module | None = None
        if not self.enabled or not any(p.ndim == 4 for p in module.parameters()):
            return
        try:
            self._copy = copy.deepcopy(module)
        except Exception:  # a module that cannot be copied runs as it is
            self.enabled = False
            return
        for p in self._copy.parameters():
            p.requires_grad_(False)
            if p.ndim == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
        self._run, self.rewrites = rewrite_for_inference(self._copy)

    def _sync(self) -> bool:
        """Copy the module's current parameters and buffers into the private copy; False if they no longer fit it
        (a submodule or parameter was replaced by one of another shape)."""
        mine = dict(self._copy.named_parameters()) | dict(self._copy.named_buffers())
        theirs = dict(self.module.named_parameters()) | dict(self.module.named_buffers())
        if mine.keys() != theirs.keys() or any(mine[k].shape != t.shape for k, t in theirs.items()):
            return False
        with torch.no_grad():
            for name, t in theirs.items():
                mine[name].copy_(t)
            refresh(self._run)
        self._verified = False
        return True

    def __call__(self, x: Any) -> Any:
        if (not self.enabled or self._run is None or self.module.training or not isinstance(x, torch.Tensor)
                or x.device.type != "cpu"):
            return self.module(x)
        key = _fingerprint(self.module)
        if key != self._key or not self._verified:
            with self._lock:
                if key != self._key:
                    if not self._sync():
                        self.enabled = False
                        return self.module(x)
                    self._key = key
                if not self._verified:
                    out = self._run(x)
                    with torch.no_grad():
                        ok = _close(out.detach() if isinstance(out, torch.Tensor) else out, self.module(x))
                    if not ok:  # never serve a copy that changed the function
                        self.enabled = False
                        return self.module(x)
                    self._verified = True
                    return out
        return self._run(x)
