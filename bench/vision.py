"""Benchmark for xrl.vision's building blocks; prints ONE JSON line.

- NMF (rank 8) on the LayerNMF workloads, xrl vs scikit-learn vs torchnmf, same data, seconds and relative error
  ||X - WH||_F / ||X||_F (float64):
    A: 1024 observations x 8 x 8 positions x 256 channels -> X [65536, 256]
    B: 1024 observations x 32 x 32 positions x 32 channels -> X [1048576, 32]
  X holds ReLU activations of a random conv net on images of coloured discs (sparse, correlated, like real ones).
  scikit-learn (and torchnmf) run on the first --sklearn-rows rows of B when that is smaller than B (xrl runs on the
  same subsample for the ratio, and also on all of B); the JSON says so.
- Integrated gradients of the value head to embedder.block2 of a CoinRun-sized IMPALA CNN (64 x 64 x 3), xrl vs
  captum's LayerIntegratedGradients, same steps and batch.

Usage: python bench/vision.py [--threads 1] [--sklearn-rows 262144] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import numpy as np
import torch


def activations(which: str, n: int = 1024, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 3, 64, 64)
    yy = torch.arange(64)[None, :, None]
    xx = torch.arange(64)[None, None, :]
    for k in range(6):                                                   # 6 discs of radius 2..7 per image
        cy = torch.randint(0, 64, (n,), generator=g)
        cx = torch.randint(0, 64, (n,), generator=g)
        col = torch.rand(n, 3, generator=g)
        m = (((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) < (2 + k) ** 2).float()
        x += m[:, None] * col[:, :, None, None]
    x = x.clamp(0, 1)
    torch.manual_seed(seed)
    nn = torch.nn
    if which == "B":
        net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())          # -> [n, 32, 32, 32]
    else:
        net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(64, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))  # -> [n, 256, 8, 8]
    with torch.no_grad():
        out = torch.cat([net(c) for c in x.split(128)])
    return out.permute(0, 2, 3, 1).reshape(-1, out.shape[1]).contiguous()  # [n, C, h, w] -> [n*h*w, C]


def rel_err(X: torch.Tensor, W, H) -> float:
    W = torch.as_tensor(np.asarray(W)).double() if not isinstance(W, torch.Tensor) else W.double()
    H = torch.as_tensor(np.asarray(H)).double() if not isinstance(H, torch.Tensor) else H.double()
    num = sum(float(((X[i:i + 65536].double() - W[i:i + 65536] @ H) ** 2).sum()) for i in range(0, len(X), 65536))
    return float(np.sqrt(num) / X.double().norm())


def run_xrl(X):
    from xrl.nmf import NMF
    t = time.perf_counter()
    m = NMF(8, max_iter=200, tol=1e-4, init="nndsvda", seed=0)
    W = m.fit_transform(X)
    return time.perf_counter() - t, rel_err(X, W, m.components_), m.n_iter_, m.n_iter_subsample_


def run_sklearn(X):
    from sklearn.decomposition import NMF as SkNMF
    Xn = X.numpy()
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = SkNMF(8, init="nndsvda", max_iter=200, tol=1e-4, random_state=0)
        W = m.fit_transform(Xn)
    return time.perf_counter() - t, rel_err(X, W, m.components_), int(m.n_iter_)


def run_torchnmf(X):
    from torchnmf.nmf import NMF as TNMF
    torch.manual_seed(0)
    t = time.perf_counter()
    m = TNMF(X.shape, rank=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = m.fit(X, beta=2, tol=1e-4, max_iter=200)
    dt = time.perf_counter() - t
    return dt, rel_err(X, m.H.detach(), m.W.detach().T), int(it)


def bench_ig(n_obs: int, steps: int) -> dict:
    from captum.attr import LayerIntegratedGradients
    from xrl.attribution import integrated_gradients
    from xrl.models.impala import ImpalaCNN
    torch.manual_seed(0)
    agent = ImpalaCNN((3, 64, 64), num_actions=15).eval()
    obs = torch.rand(n_obs, 3, 64, 64)
    layer = agent.embedder.block2
    out = {}
    t = time.perf_counter()
    ours = integrated_gradients(agent, obs, "embedder.block2", "fc_value", n_steps=steps, batch_size=n_obs * steps)
    out["xrl_s"] = time.perf_counter() - t
    lig = LayerIntegratedGradients(lambda x: agent(x)[1], layer)
    t = time.perf_counter()
    # captum integrates from the activation of a baseline INPUT; with the zero image the bias makes it non-zero, so the
    # numbers differ from lucid's zero-activation baseline (see docs/vision.md); the work per step is the same.
    theirs = lig.attribute(obs, baselines=torch.zeros_like(obs), n_steps=steps, method="riemann_right",
                           internal_batch_size=n_obs * steps)
    out["captum_s"] = time.perf_counter() - t
    out["shape"] = list(ours.shape)
    out["speedup"] = out["captum_s"] / out["xrl_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy shared 2-core box)")
    ap.add_argument("--sklearn-rows", type=int, default=262144, help="rows of workload B given to sklearn/torchnmf")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--skip-torchnmf", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(args.threads)
    except ImportError:  # pragma: no cover
        limiter = None
    res = {"bench": "vision", "torch": torch.__version__, "threads": args.threads, "cpu": platform.processor() or
           platform.machine(), "loadavg_start": list(os.getloadavg())}
    n = 64 if args.quick else 1024
    for name in ("A", "B"):
        X = activations(name, n=n)
        entry = {"shape": list(X.shape), "density": float((X > 0).float().mean())}
        t, e, it, it_sub = run_xrl(X)
        entry["xrl_full"] = {"s": t, "rel_err": e, "n_iter": it, "n_iter_subsample": it_sub}
        Xs = X
        if name == "B" and len(X) > args.sklearn_rows:
            Xs = X[:args.sklearn_rows].contiguous()
            entry["subsample_rows_for_comparison"] = len(Xs)
            t, e, it, it_sub = run_xrl(Xs)
            entry["xrl"] = {"s": t, "rel_err": e, "n_iter": it, "n_iter_subsample": it_sub}
        else:
            entry["xrl"] = entry["xrl_full"]
        t, e, it = run_sklearn(Xs)
        entry["sklearn"] = {"s": t, "rel_err": e, "n_iter": it}
        if not args.skip_torchnmf:
            try:
                t, e, it = run_torchnmf(Xs)
                entry["torchnmf"] = {"s": t, "rel_err": e, "n_iter": it}
            except ImportError:
                entry["torchnmf"] = None
        entry["speedup_vs_sklearn"] = entry["sklearn"]["s"] / entry["xrl"]["s"]
        entry["err_ratio_vs_sklearn"] = entry["xrl"]["rel_err"] / entry["sklearn"]["rel_err"]
        res[f"nmf_{name}"] = entry
    res["ig"] = bench_ig(8 if args.quick else 32, 10)
    res["loadavg_end"] = list(os.getloadavg())
    if limiter is not None:
        limiter.unregister() if hasattr(limiter, "unregister") else None
    print(json.dumps(res))


if __name__ == "__main__":
    main()
