"""Small shared helpers: device resolution, seeded generators (never global reseeding), module modes."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch


def resolve_device(device: Any = None, module: torch.nn.Module | None = None) -> torch.device:
    """The device to work on: the explicit argument, else the module's parameters' device, else CPU."""
    if device is not None:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: expected an available device, got {device!r}; CUDA is not available here, "
                             "use device='cpu'")
        return dev
    if module is not None:
        for p in module.parameters():
            return p.device
        for b in module.buffers():
            return b.device
    return torch.device("cpu")


def torch_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) if seed is not None else int(np.random.SeedSequence().generate_state(1)[0]))
    return g


@contextmanager
def init_rng(seed: int | None = None, device: torch.device | str | None = None) -> Iterator[None]:
    """Build modules without touching the global RNG: inside the block, torch's default CPU generator (and, when
    ``device`` is a CUDA device, that device's default generator) starts from ``seed`` (or from its current state
    when ``seed`` is None), and their states are put back on exit, also after an error.

    Module constructors draw their initial weights from the global generator (``nn.Linear`` has no generator
    argument), so building a network changes the global RNG state behind the caller's back. A loader that builds a
    network only to overwrite its weights uses ``init_rng()``; a trainer that must reproduce a seeded initialisation
    uses ``init_rng(seed)``, which gives the same weights as ``torch.manual_seed(seed)`` on the CPU generator but
    leaves the caller's RNG (and the other CUDA generators, which ``torch.manual_seed`` would reseed) as they were.
    Lazy layers materialised by a first forward pass on ``device`` draw from that device's generator: pass it.

    Examples
    --------
    >>> before = torch.random.get_rng_state()
    >>> with init_rng(0):
    ...     layer = torch.nn.Linear(2, 2)
    >>> torch.equal(before, torch.random.get_rng_state())
    True
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    cuda = [dev] if dev.type == "cuda" else []   # fork (save and restore) only the generators used
    with torch.random.fork_rng(devices=cuda):
        if seed is not None:
            torch.random.default_generator.manual_seed(int(seed))
            for d in cuda:
                torch.cuda.default_generators[d.index].manual_seed(int(seed))
        yield


def numpy_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


@contextmanager
def eval_mode(*modules: torch.nn.Module | None) -> Iterator[None]:
    """Put every given module (and each of its submodules) in eval mode, and restore each submodule's own mode on
    exit, also after an error.

    Restoring top-level ``train(was)`` is not enough: a BatchNorm the user froze in eval mode inside a train-mode
    network would come back in training mode. ``None`` entries are skipped. BatchNorm running statistics are not
    updated in eval mode, so the modules' state is unchanged by what runs inside.
    """
    modes = [(sub, sub.training) for m in modules if m is not None for sub in m.modules()]
    try:
        for sub, _ in modes:
            sub.training = False
        yield
    finally:
        for sub, mode in modes:
            sub.training = mode
