"""Shared tiny real models for the tests (trained once per test process, on scikit-learn's digits: no download)."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)  # tests run in parallel processes (pytest -n 2) on 2 cores


@pytest.fixture
def ctrl_c_at_write(monkeypatch):
    """``with ctrl_c_at_write(k, only=""): save()``: the k-th file written inside the block (counting only paths that
    contain ``only``) raises KeyboardInterrupt, as a Ctrl-C at that file boundary; the block expects it, and the
    writer is restored after."""
    from xrl import io

    real = io.atomic_write_bytes

    @contextmanager
    def interrupted(k: int, only: str = ""):
        calls = {"n": 0}

        def flaky(path, data):
            if only in str(path):
                calls["n"] += 1
                if calls["n"] == k:
                    raise KeyboardInterrupt
            real(path, data)

        monkeypatch.setattr(io, "atomic_write_bytes", flaky)
        try:
            with pytest.raises(KeyboardInterrupt):
                yield
        finally:
            monkeypatch.setattr(io, "atomic_write_bytes", real)

    return interrupted


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


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster per test process (2 CPUs, HOME in a temporary folder while it starts), shut down at the
    end of the session; started only by the tests that ask for it (tests/distributed, the interface over Ray)."""
    ray = pytest.importorskip("ray", reason='xrl.distributed needs the ray extra: pip install "xrl[ray]"')
    saved = {k: os.environ.get(k) for k in ("HOME", "RAY_USAGE_STATS_ENABLED")}
    root = tempfile.mkdtemp(prefix="xrl-ray-")  # short: Ray's socket paths live under it
    os.environ.update(HOME=os.path.join(root, "home"), RAY_USAGE_STATS_ENABLED="0")
    os.makedirs(os.environ["HOME"])
    assert not ray.is_initialized(), "another test left Ray connected"
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=os.path.join(root, "ray"), log_to_driver=False)
    finally:  # Ray's processes keep this environment; the other tests get theirs back (HOME holds data caches)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
