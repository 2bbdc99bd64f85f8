"""Shared tiny real models for the tests (trained once per test process, on scikit-learn's digits: no download)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)  # tests run in parallel processes (pytest -n 2) on 2 cores


@pytest.fixture(scope="session")
def digits():
    from xrl.datasets import load_digits_images

    return load_digits_images()


class DigitsClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


class DigitsEncoder(nn.Module):
    def __init__(self, latent_dim: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, latent_dim), nn.Tanh())

    def forward(self, x):
        return self.net(x)


class DigitsDecoder(nn.Module):
    def __init__(self, latent_dim: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, 64), nn.ReLU(), nn.Linear(64, 64), nn.Sigmoid(),
                                 nn.Unflatten(1, (1, 8, 8)))

    def forward(self, z):
        return self.net(z)


def _train_digits_models(X: np.ndarray, y: np.ndarray):
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clf, enc, dec = DigitsClassifier(), DigitsEncoder(), DigitsDecoder()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    opt = torch.optim.Adam(clf.parameters(), 1e-2)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(clf(Xt), yt).backward()
        opt.step()
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], 3e-3)
    for _ in range(800):
        idx = torch.randint(0, len(Xt), (256,), generator=g)
        opt.zero_grad()
        F.binary_cross_entropy(dec(enc(Xt[idx])), Xt[idx]).backward()
        opt.step()
    for m in (clf, enc, dec):
        m.eval()
    return clf, enc, dec


@pytest.fixture(scope="session")
def digits_models(digits):
    """(classifier, encoder, decoder): an MLP classifier (~100% train accuracy) and an 8-d tanh autoencoder."""
    X, y = digits
    return _train_digits_models(X, y)
