"""Minimal, seeded training loops for the reference networks (classifier: cross-entropy; autoencoder: BCE)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import io
from .._utils import eval_mode


def train_model(model: nn.Module, X: np.ndarray, y: np.ndarray | None = None, *, epochs: int = 1,
                batch_size: int = 64, lr: float = 1e-3, seed: int = 0, device: torch.device | str = "cpu",
                progress: bool = True, desc: str = "train") -> list[float]:
    """Adam on mini-batches: cross-entropy against ``y`` when given, else binary cross-entropy reconstruction of ``X``
    (an autoencoder with outputs in [0, 1]). Returns the mean loss per epoch; leaves the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    yt = None if y is None else torch.from_numpy(np.asarray(y, dtype=np.int64))
    history = []
    for ep in range(epochs):
        perm = torch.randperm(len(Xt), generator=gen)
        total = 0.0
        bar = tqdm(range(0, len(Xt), batch_size), disable=not progress, desc=f"{desc} {ep + 1}/{epochs}",
                   dynamic_ncols=True)
        for i in bar:
            idx = perm[i:i + batch_size]
            xb = Xt[idx].to(device)
            out = model(xb)
            loss = F.cross_entropy(out, yt[idx].to(device)) if yt is not None else F.binary_cross_entropy(out, xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append(total / len(Xt))
    model.eval()
    return history


def load_or_train(model: nn.Module, path: str | Path, fit: Callable[[], object]) -> bool:
    """Load ``model``'s weights from ``path`` (safetensors) if present, else call ``fit()`` and save them there.
    Returns True when the weights were loaded."""
    path = Path(path)
    if path.exists():
        io.load_state_strict(model, io.load_tensors(path, next(model.parameters()).device), str(path))
        model.eval()
        return True
    fit()
    io.save_tensors(path, model.state_dict())
    return False


@torch.no_grad()
def predict_batched(model: nn.Module, X: np.ndarray, batch_size: int = 1000,
                    device: torch.device | str | None = None) -> np.ndarray:
    """Run ``model`` over ``X`` in batches (eval mode, every submodule's mode restored; no gradients) -> numpy."""
    device = device or next(model.parameters()).device
    with eval_mode(model):
        out = [model(torch.from_numpy(np.ascontiguousarray(X[i:i + batch_size])).to(device)).cpu().numpy()
               for i in range(0, len(X), batch_size)]
    return np.concatenate(out)
