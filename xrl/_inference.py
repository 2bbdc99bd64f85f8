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

``torch.jit`` is deprecated in favour of ``torch.compile``, which costs about a minute of compilation per network
here and was no faster (shared/FACTS.md); when ``torch.jit`` goes away, the fallback keeps everything working.
"""
from __future__ import annotations

import threading
import warnings
from typing import Any

import torch
from torch import nn

_RTOL, _ATOL = 1e-4, 1e-5


def _fingerprint(module: nn.Module) -> tuple:
    return tuple((id(t), t._version, t.data_ptr()) for t in [*module.parameters(), *module.buffers()])


def _close(out: Any, ref: Any) -> bool:
    if isinstance(ref, (list, tuple)):
        return (isinstance(out, (list, tuple)) and len(out) == len(ref)
                and all(_close(o, r) for o, r in zip(out, ref)))
    return (isinstance(out, torch.Tensor) and isinstance(ref, torch.Tensor) and out.shape == ref.shape
            and out.dtype == ref.dtype and torch.allclose(out, ref, rtol=_RTOL, atol=_ATOL))


class InferenceModule:
    """``InferenceModule(module)(x)`` == ``module.eval()(x)`` without gradients, faster where tracing is safe.

    ``enabled=False`` (or an unsupported module/input) always runs the eager module. ``status`` says which path is
    in use and, after a fallback, why.
    """

    def __init__(self, module: nn.Module, enabled: bool = True) -> None:
        self.module = module
        self.enabled = bool(enabled)
        self._fast: Any = None
        self._key: tuple | None = None
        self._checked_sizes: set[int] = set()
        self._lock = threading.Lock()  # the train/eval toggle and the lazy build are not safe to interleave
        self.status = "eager (not traced yet)" if enabled else "eager (disabled)"

    def _build(self, x: torch.Tensor) -> None:
        self._fast, self._checked_sizes = None, set()
        self._key = _fingerprint(self.module)
        if any(isinstance(m, nn.Upsample) for m in self.module.modules()):
            # oneDNN's optimized graph leaves upsampling outside and converts layouts around it: for seed 000's decoder
            # 12.9 ms per 100 vs 5.6 ms for eager with channels-last weights (19 ms plain eager)
            self._fast = ChannelsLastCall(self.module)
            self.status = "channels-last eager"
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer warnings
                traced = torch.jit.trace(self.module, x, check_trace=False)
                self._fast = torch.jit.optimize_for_inference(traced)
            self.status = "optimized"
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
            if self._fast is None or self._key != _fingerprint(module):
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
    """``ChannelsLastCall(module)(x)`` == ``module(x)`` with gradients, its 4-d (conv) weights read channels-last.

    For the frozen decoder in the actor update (gradients flow to ``x`` only). oneDNN runs small convolutions,
    upsampling and their backward passes much faster on channels-last tensors, and a conv whose weight is channels-last
    returns channels-last activations, so the whole net follows: measured 2x faster forward + backward for seed 000's
    MNIST decoder on CPU. The module itself is not touched: the converted weights are passed with
    ``torch.func.functional_call`` and cached until a parameter changes. CPU only; elsewhere the module is called as is.
    """

    def __init__(self, module: nn.Module, enabled: bool = True) -> None:
        self.module = module
        self.enabled = bool(enabled)
        self._key: tuple | None = None
        self._weights: dict[str, torch.Tensor] = {}

    def __call__(self, x: Any) -> Any:
        if not self.enabled or not isinstance(x, torch.Tensor) or x.device.type != "cpu":
            return self.module(x)
        key = _fingerprint(self.module)
        if key != self._key:
            self._key = key
            self._weights = {name: p.detach().contiguous(memory_format=torch.channels_last)
                             for name, p in self.module.named_parameters() if p.ndim == 4}
        if not self._weights:
            return self.module(x)
        return torch.func.functional_call(self.module, self._weights, (x,), strict=False)
