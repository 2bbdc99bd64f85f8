"""Hand-written CPU kernels for the frozen networks' no-gradient passes, built on first use with the C++ compiler.

``conv_pool2d``: convolution (stride 1, zero padding) + max-pooling (kernel = stride) + optional ReLU in one pass
over NHWC tensors. oneDNN writes the whole convolution output and the pooling reads it back; for small CNNs that
traffic is most of the time (seed 000's classifier, first block: 21 MB per 100 images). Measured on this project's
2-core AVX2 CPU, one thread, 100 images (``bench/inference.py`` has the whole-network figures): the classifier's
conv(1->64, 2x2) + pool + ReLU 1.9 ms vs oneDNN's 7.1 ms, its conv(64->32, 2x2) + pool + ReLU 8.1 vs 11.4 ms; outputs
within 2e-6 (sums in another order).

The source ships with the package; the shared library is compiled with ``-O3 -march=native`` into
``<cache>/kernels/`` (see :func:`xrl.datasets.data_home`) under a name that hashes the source, the compiler and the
CPU, written atomically, and loaded with ``ctypes`` (which releases the GIL while it runs). It is linked against the
OpenMP runtime torch loaded, so a batch split over ``torch.get_num_threads()`` threads runs on torch's own thread team
(with a second runtime the two teams spun against each other: 17 vs 8 ms per classifier call). No compiler, a failed
build or ``XRL_KERNELS=0`` in the environment: :func:`available` is False and callers keep torch's kernels. Like
torch's own extension cache, that folder must be as trusted as the Python environment: a library found there is
loaded (and so runs) without a further check.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("conv_pool2d.cpp")
_FLAG_SETS = (["-O3", "-march=native"], ["-O3"])  # -march=native is not known to every compiler/target
ENV_VAR = "XRL_KERNELS"

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
status = "not built yet"


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def _cpu_signature() -> str:
    try:  # x86 'flags' / ARM 'Features': a library built with -march=native must not move to another CPU
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _openmp_runtime() -> str | None:
    """The GNU OpenMP runtime torch's CPU ops run on (Linux wheels bundle one in ``torch/lib``), else None. Other
    packages may have loaded their own copy (scikit-learn does), so torch's directory is preferred."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as f:
            paths = {p for p in (line.split()[-1] for line in f) if os.path.basename(p).startswith("libgomp")}
    except OSError:
        return None
    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    own = sorted(p for p in paths if os.path.dirname(p) == torch_lib)
    if own:
        return own[0]
    return next(iter(paths)) if len(paths) == 1 else None  # several and none of them torch's: do not guess


def _build(cxx: str) -> Path:
    from ..datasets import data_home

    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    source = _SOURCE.read_bytes()
    gomp = _openmp_runtime()
    errors = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256(b"\0".join([source, " ".join(flags).encode(), version.encode(), str(gomp).encode(),
                                         platform.machine().encode(), _cpu_signature().encode()])).hexdigest()[:16]
        target = data_home() / "kernels" / f"conv_pool2d-{key}.so"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            obj, lib = os.path.join(tmp, "k.o"), os.path.join(tmp, "k.so")
            omp = ["-fopenmp"] if gomp else []  # compile only: linking -fopenmp would add the system's libgomp
            steps = [[cxx, *flags, *omp, "-std=c++17", "-fPIC", "-c", str(_SOURCE), "-o", obj],
                     [cxx, "-shared", obj, *([gomp, f"-Wl,-rpath,{os.path.dirname(gomp)}"] if gomp else []),
                      "-o", lib]]
            for cmd in steps:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                if done.returncode != 0:
                    errors.append(done.stderr.strip()[-300:])
                    break
            else:
                os.replace(lib, target)  # atomic: a concurrent process sees no file or a whole one
                return target
    raise RuntimeError("; ".join(errors))


def _load() -> ctypes.CDLL | None:
    global _lib, _tried, status
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        if os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "no", "off"):
            status = f"disabled ({ENV_VAR}=0)"
        elif not hasattr(torch.library, "custom_op"):
            status = "unavailable (torch < 2.4 has no torch.library.custom_op)"
        elif (cxx := _compiler()) is None:
            status = "unavailable (no C++ compiler found; set CXX)"
        else:
            try:
                lib = ctypes.CDLL(str(_build(cxx)))
                fn = lib.xrl_conv_pool2d
                fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int] * 14
                fn.restype = ctypes.c_int
                _lib, status = lib, "built"
            except Exception as exc:  # any build or load problem: torch's kernels stay in use
                status = f"unavailable (build failed: {type(exc).__name__}: {str(exc)[:200]})"
        _tried = True
        return _lib


def available() -> bool:
    """Whether the compiled kernels can be used (builds them on the first call)."""
    return _load() is not None


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """A ``Conv2d`` weight ``[Cout, Cin, KH, KW]`` in the kernel's layout ``[KH * KW * Cin, Cout]``."""
    return weight.detach().permute(2, 3, 1, 0).reshape(-1, weight.shape[0]).float().contiguous()


def output_size(size: int, kernel: int, padding: int, pool: int) -> int:
    return (size + 2 * padding - kernel + 1) // pool


def supported(in_channels: int, out_channels: int) -> bool:
    return out_channels % 8 == 0 and in_channels >= 1


def _run(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, kernel: tuple[int, int],
         padding: tuple[int, int], pool: int, relu: bool) -> torch.Tensor:
    lib = _load()
    if lib is None:
        raise RuntimeError(f"xrl._kernels: {status}")
    for name, t in {"x": x, "weight": weight, "bias": bias}.items():  # the kernel reads raw CPU float32 memory
        if t.device.type != "cpu" or t.dtype != torch.float32:
            raise ValueError(f"conv_pool2d: {name} must be a CPU float32 tensor, got {t.dtype} on {t.device}")
    if x.dim() != 4 or weight.dim() != 2 or bias.shape != (weight.shape[1],):
        raise ValueError(f"conv_pool2d: expected x [N, C, H, W], weight [K, Cout] and bias [Cout], got "
                         f"{tuple(x.shape)}, {tuple(weight.shape)}, {tuple(bias.shape)}")
    n, cin, h, w = x.shape
    cout = weight.shape[1]
    if weight.shape[0] != kernel[0] * kernel[1] * cin or not supported(cin, cout):
        raise ValueError(f"conv_pool2d: packed weight {tuple(weight.shape)} does not fit {cin} input channels and "
                         f"kernel {kernel}, or {cout} output channels are not a multiple of 8")
    ho, wo = output_size(h, kernel[0], padding[0], pool), output_size(w, kernel[1], padding[1], pool)
    out = x.new_empty(n, max(ho, 0), max(wo, 0), cout)
    if n == 0 or ho <= 0 or wo <= 0:
        return out.permute(0, 3, 1, 2)
    xh = x.permute(0, 2, 3, 1).contiguous()  # NHWC; a channels-last input is already laid out so
    weight, bias = weight.contiguous(), bias.contiguous()
    done = lib.xrl_conv_pool2d(xh.data_ptr(), weight.data_ptr(), bias.data_ptr(), out.data_ptr(), n, h, w, cin, cout,
                               kernel[0], kernel[1], padding[0], padding[1], pool, ho, wo, int(relu),
                               torch.get_num_threads())
    if done != 0:
        raise RuntimeError(f"conv_pool2d: the kernel rejected the geometry (code {done})")
    return out.permute(0, 3, 1, 2)  # [N, Cout, HO, WO] viewed over NHWC memory: a channels-last tensor


def reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int], pool: int,
              relu: bool) -> torch.Tensor:
    """The same function with torch's kernels (``weight`` in the usual ``[Cout, Cin, KH, KW]`` layout)."""
    y = torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(x, weight, bias, padding=padding), pool)
    return torch.relu(y) if relu else y


if hasattr(torch.library, "custom_op"):
    # a registered op, so that torch.jit.trace records the call (a plain Python call would be baked in as a constant)
    @torch.library.custom_op("xrl::conv_pool2d", mutates_args=())
    def conv_pool2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, kernel_h: int, kernel_w: int,
                    pad_h: int, pad_w: int, pool: int, relu: bool) -> torch.Tensor:
        """``max_pool2d(conv2d(x, W, bias, padding), pool)`` (+ ReLU) for a CPU float32 ``x`` ``[N, Cin, H, W]``, with
        ``weight`` = :func:`pack_weight` (W). Output ``[N, Cout, HO, WO]`` in channels-last memory."""
        return _run(x, weight, bias, (kernel_h, kernel_w), (pad_h, pad_w), pool, relu)

    @conv_pool2d.register_fake
    def _(x, weight, bias, kernel_h, kernel_w, pad_h, pad_w, pool, relu):
        n, _, h, w = x.shape
        return x.new_empty(n, weight.shape[1], output_size(h, kernel_h, pad_h, pool),
                           output_size(w, kernel_w, pad_w, pool))
else:  # pragma: no cover - old torch: available() is False and nothing calls this
    def conv_pool2d(*args, **kwargs):
        raise RuntimeError(status)
