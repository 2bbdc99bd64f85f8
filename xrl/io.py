"""THE save/load: safetensors for tensors, JSON for configuration; written atomically; nothing unpickled on load.

A saved object is a directory holding ``<name>.safetensors`` + ``<name>.json`` (any number of pairs). Writes go to a
temporary file in the same directory followed by ``os.replace``, so a crash never leaves a half-written file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load_bytes
from safetensors.torch import save as _st_save_bytes

PathLike = str | os.PathLike


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; saved weights (and bundled package data) must be readable
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"config value of type {type(obj).__name__} is not JSON-serialisable")


def save_json(path: PathLike, config: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, json.dumps(config, indent=1, sort_keys=True, default=_jsonable).encode())


def load_json(path: PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: expected an existing JSON file, got {str(path)!r} (missing)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupt JSON ({exc}); re-save the object") from exc


def save_tensors(path: PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Save a flat name -> tensor mapping (tensors are made contiguous and moved to CPU first)."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, _st_save_bytes(flat, metadata=dict(metadata) if metadata else None))


def load_tensors(path: PathLike, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: expected an existing .safetensors file, got {str(path)!r} (missing)")
    try:
        tensors = _st_load_bytes(path.read_bytes())
    except (SafetensorError, Exception) as exc:  # safetensors raises several types on corrupt headers
        raise ValueError(f"{path}: not a valid safetensors file ({exc}); the file is corrupt or truncated") from exc
    return {k: v.to(device) for k, v in tensors.items()}


def prefixed_state(prefix: str, module_or_state: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = module_or_state.state_dict() if isinstance(module_or_state, torch.nn.Module) else module_or_state
    return {f"{prefix}.{k}": v for k, v in state.items()}


def strip_prefix(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """load_state_dict with an error that lists missing/unexpected keys and shape mismatches by name."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: saved {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}")
        if shapes:
            parts.append("shape mismatches " + "; ".join(shapes[:8]))
        raise ValueError(f"{what}: saved weights do not fit the network ({', '.join(parts)}); "
                         "build the network with the same architecture it was saved with")
    module.load_state_dict(state)


def save_module(directory: PathLike, name: str, module: torch.nn.Module, config: Mapping[str, Any]) -> None:
    """Save one module as ``<name>.safetensors`` + ``<name>.json`` in ``directory``."""
    directory = Path(directory)
    save_tensors(directory / f"{name}.safetensors", module.state_dict())
    save_json(directory / f"{name}.json", config)


def load_module_state(directory: PathLike, name: str, device: torch.device | str = "cpu"):
    directory = Path(directory)
    return load_json(directory / f"{name}.json"), load_tensors(directory / f"{name}.safetensors", device)
