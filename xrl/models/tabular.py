"""Heterogeneous autoencoder (HeAE) for mixed numerical/categorical data, and its trainer.

The encoder maps the model-space row (standardised numerical features, then one-hot blocks; see
:class:`xrl.preprocessing.TabularPreprocessor`) to a latent code in [-1, 1] (tanh, so the CFRL actor's tanh output
lives in the same box). The decoder returns a *list* of heads: one for all numerical features (standardised values)
followed by one logits head per categorical feature, in column order (alibi's convention).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._utils import resolve_device, torch_generator
from .._validation import check_scalar, error_message
from ._registry import register
from .mnist import glorot_init_

__all__ = ["TabularEncoder", "TabularDecoder", "HeAE", "HeAETrainConfig", "train_heae", "heae_loss",
           "ADULTEncoder", "ADULTDecoder"]


@register
class TabularEncoder(nn.Module):
    """``[N, D]`` model-space rows -> ``[N, latent_dim]`` in [-1, 1]: Linear-ReLU-Linear-tanh (alibi's ADULTEncoder)."""

    def __init__(self, input_dim: int, hidden_dim: int = 128, latent_dim: int = 15) -> None:
        super().__init__()
        self.config = {"input_dim": int(input_dim), "hidden_dim": int(hidden_dim), "latent_dim": int(latent_dim)}
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, latent_dim)
        glorot_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc2(F.relu(self.fc1(x))))


@register
class TabularDecoder(nn.Module):
    """``[N, latent_dim]`` -> list of heads ``[[N, d_0], [N, d_1], ...]`` (numerical head first, then categorical
    logits), from a shared Linear-ReLU trunk (alibi's ADULTDecoder)."""

    def __init__(self, latent_dim: int = 15, hidden_dim: int = 128, output_dims: Sequence[int] = (4,)) -> None:
        super().__init__()
        output_dims = [int(d) for d in output_dims]
        if not output_dims or min(output_dims) < 1:
            raise ValueError(error_message("output_dims", "a non-empty list of positive head widths", output_dims))
        self.config = {"latent_dim": int(latent_dim), "hidden_dim": int(hidden_dim), "output_dims": output_dims}
        self.fc1 = nn.Linear(latent_dim, hidden_dim)
        self.heads = nn.ModuleList(nn.Linear(hidden_dim, d) for d in output_dims)
        glorot_init_(self)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        h = F.relu(self.fc1(z))
        return [head(h) for head in self.heads]


# the names of alibi's Adult networks, so its example ports line by line
ADULTEncoder = TabularEncoder
ADULTDecoder = TabularDecoder


class HeAE(nn.Module):
    """Heterogeneous autoencoder: ``forward(x)`` returns the decoder's list of heads."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.decoder(self.encoder(x))


def heae_loss(heads: Sequence[torch.Tensor], x: torch.Tensor, n_num: int, cat_sizes: Sequence[int]
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MSE on the numerical head + mean cross-entropy over the categorical heads (alibi's weighting).

    ``x`` is the model-space batch ``[N, n_num + sum K]``; returns the total and its parts.
    """
    parts: dict[str, torch.Tensor] = {}
    total = x.new_zeros(())
    h = 0
    if n_num:
        parts["num_mse"] = F.mse_loss(heads[0], x[:, :n_num])
        total = total + parts["num_mse"]
        h = 1
    if cat_sizes:
        targets = torch.split(x[:, n_num:], list(cat_sizes), dim=1)  # one-hot blocks [N, K_j]
        ce = sum(F.cross_entropy(head, t.argmax(1)) for head, t in zip(heads[h:], targets)) / len(cat_sizes)
        parts["cat_ce"] = ce
        total = total + ce
    return total, parts


@dataclass
class HeAETrainConfig:
    """Training settings of :func:`train_heae` (defaults: alibi's Adult example)."""

    epochs: int = 50
    """passes over the training rows"""
    batch_size: int = 128
    """rows per Adam step (the last incomplete batch is dropped, as in the example)"""
    lr: float = 1e-3
    """Adam learning rate"""
    seed: int = 0
    """shuffling seed"""
    log_every: int = 10
    """print the loss every this many epochs (0: silent)"""
    history: list = field(default_factory=list)
    """filled with per-epoch mean losses"""


def train_heae(model: HeAE, X: np.ndarray | torch.Tensor, n_num: int, cat_sizes: Sequence[int],
               config: HeAETrainConfig | None = None, device=None) -> HeAE:
    """Train a :class:`HeAE` on model-space rows ``X`` ``[N, n_num + sum K]`` (e.g. ``pre.transform(X_raw)``).

    Returns the model in eval mode. Loss: MSE on the numerical head + mean CE over categorical heads.

    Examples
    --------
    >>> import numpy as np
    >>> from xrl.preprocessing import TabularPreprocessor
    >>> X = np.c_[np.random.default_rng(0).normal(size=(64, 2)), np.arange(64) % 3]
    >>> pre = TabularPreprocessor(category_map={2: ["a", "b", "c"]}).fit(X)
    >>> ae = HeAE(TabularEncoder(pre.model_dim, 16, 4), TabularDecoder(4, 16, pre.head_dims))
    >>> ae = train_heae(ae, pre.transform(X), pre.n_num, pre.cat_sizes_, HeAETrainConfig(epochs=2, log_every=0))
    """
    cfg = config or HeAETrainConfig()
    check_scalar("epochs", cfg.epochs, int, low=1)
    check_scalar("batch_size", cfg.batch_size, int, low=1)
    check_scalar("lr", cfg.lr, (int, float), low=0, low_inclusive=False)
    device = resolve_device(device, model)
    Xt = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X, dtype=torch.float32).to(device)
    if Xt.ndim != 2 or Xt.shape[1] != n_num + sum(cat_sizes):
        raise ValueError(error_message("X", f"a [N, {n_num + sum(cat_sizes)}] model-space array", Xt))
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g = torch_generator(cfg.seed)
    n = len(Xt)
    bs = min(cfg.batch_size, n)
    n_batches = max(n // bs, 1)
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=g).to(device)
        total = torch.zeros((), device=device)
        for b in range(n_batches):
            xb = Xt[perm[b * bs:(b + 1) * bs]]  # [bs, D]
            loss, _ = heae_loss(model(xb), xb, n_num, cat_sizes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        mean = float(total) / n_batches
        cfg.history.append(mean)
        if not math.isfinite(mean):
            raise RuntimeError(f"train_heae: the loss became {mean} at epoch {epoch + 1}; lower lr")
        if cfg.log_every and ((epoch + 1) % cfg.log_every == 0 or epoch == 0):
            # stderr: stdout stays free for results (benchmarks print one JSON line there)
            print(f"HeAE epoch {epoch + 1}/{cfg.epochs} loss {mean:.4f} ({time.perf_counter() - t0:.1f}s)",
                  file=sys.stderr)
    return model.eval()
