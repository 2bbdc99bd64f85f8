"""Rebuild reference networks from JSON: each registered class records its constructor arguments in ``config``."""
from __future__ import annotations

from typing import Any

import torch.nn as nn

MODEL_REGISTRY: dict[str, type[nn.Module]] = {}


def register(cls: type[nn.Module]) -> type[nn.Module]:
    MODEL_REGISTRY[cls.__name__] = cls
    return cls


def model_spec(module: nn.Module) -> dict[str, Any] | None:
    """``{"class": name, "config": {...}}`` for registered xrl networks, None for user networks."""
    name = type(module).__name__
    if MODEL_REGISTRY.get(name) is type(module) and hasattr(module, "config"):
        return {"class": name, "config": dict(module.config)}
    return None


def build_model(spec: dict[str, Any]) -> nn.Module:
    name = spec.get("class")
    if name not in MODEL_REGISTRY:
        raise ValueError(f"model class: expected one of {sorted(MODEL_REGISTRY)}, got {name!r}; pass the network "
                         "object yourself when loading")
    return MODEL_REGISTRY[name](**spec.get("config", {}))
