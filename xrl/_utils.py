"""Small shared helpers: device resolution and seeded generators (never global reseeding)."""
from __future__ import annotations

from typing import Any

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


def numpy_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
