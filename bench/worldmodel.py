"""Benchmark of xrl.worldmodel on this machine; prints one JSON line.

- world-model training: updates/s of the cpu_config agent (16 x 16 batches): a full update (world model + actor and
  critic in imagination) and a world-model-only update;
- explanation wall time of explain_latents for B=8, L=50, rank=10 (rollouts + NMF) with the bundled Freeway agent
  (a fresh cpu_config agent if the checkpoint is missing);
- NMF time on that explanation's [B*L*C, K] matrix: xrl.nmf.NMF vs the seed's torchnmf call
  (``NMF(V.shape, rank=10).fit(V)`` with V = X^T, torchnmf's defaults: beta=1, tol=1e-4, max_iter=200).

Usage: python bench/worldmodel.py [--threads N] [--updates N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--updates", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from xrl.envs import make_minatar
    from xrl.nmf import NMF
    from xrl.worldmodel import DreamerAgent, cpu_config
    from xrl.worldmodel.explain import explain_latents
    from xrl.worldmodel.pretrained import FREEWAY_POMDP, load_pretrained
    from xrl.worldmodel.train import ReplayBuffer, Trainer

    out: dict = {"bench": "worldmodel", "torch": torch.__version__, "threads": args.threads,
                 "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    # -- training throughput ---------------------------------------------------------------------------------------
    cfg = cpu_config()
    torch.manual_seed(0)
    agent = DreamerAgent(cfg)
    agent.set_generator(torch.Generator().manual_seed(0))
    trainer = Trainer(agent, cfg)
    env = make_minatar("freeway", pomdp=True, one_hot_actions=True)
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(3000, cfg.obs_shape, cfg.action_size)
    obs, _ = env.reset(seed=0)
    buf.add(obs, np.zeros(3, np.float32), 0.0, False, True)
    for _ in range(2000):
        a = np.eye(3, dtype=np.float32)[rng.integers(3)]
        obs, r, term, trunc, _ = env.step(a)
        buf.add(obs, a, r, term, False)
    trainer.train_batch(buf.sample(cfg.batch_size, cfg.seq_len, rng, "cpu"))  # warm-up
    t = time.perf_counter()
    for _ in range(args.updates):
        trainer.train_batch(buf.sample(cfg.batch_size, cfg.seq_len, rng, "cpu"))
    full = args.updates / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(args.updates):
        loss, _, _ = trainer.world_model_loss(buf.sample(cfg.batch_size, cfg.seq_len, rng, "cpu"))
        trainer.model_optimizer.zero_grad()
        loss.backward()
        trainer.model_optimizer.step()
    wm = args.updates / (time.perf_counter() - t)
    out.update({"train_batch": f"{cfg.batch_size}x{cfg.seq_len}", "train_updates_per_s": round(full, 3),
                "world_model_updates_per_s": round(wm, 3),
                "train_frames_per_s_at_train_every": round(full * cfg.train_every, 1)})
    # -- explanation -----------------------------------------------------------------------------------------------
    try:
        expl_agent, which = load_pretrained(FREEWAY_POMDP), "bundled freeway_pomdp"
    except FileNotFoundError:
        expl_agent, which = agent.eval(), "untrained cpu_config"
    t = time.perf_counter()
    ex = explain_latents(expl_agent, env, batch=8, seq_len=50, rank=10, seed=0, progress=False)
    out.update({"explain_agent": which, "explain_B_L_rank": [8, 50, 10],
                "explain_seconds": round(time.perf_counter() - t, 3), "explain_rollout_seconds":
                round(ex.rollout_seconds, 3), "explain_nmf_seconds": round(ex.nmf_seconds, 4)})
    # -- NMF: xrl vs the seed's torchnmf call ----------------------------------------------------------------------
    B, L, C, K = ex.shape
    X = ex.probs.reshape(B * L * C, K)  # [B, L, C, K] -> [B*L*C, K]
    Xt = torch.from_numpy(X)
    nmf = NMF(n_components=10, max_iter=200, tol=1e-4, seed=0)
    t = time.perf_counter()
    W = nmf.fit_transform(X)
    out["nmf_xrl_seconds"] = round(time.perf_counter() - t, 4)
    out["nmf_xrl_rel_error"] = round(float(np.linalg.norm(X - W @ nmf.components_) / np.linalg.norm(X)), 5)
    out["nmf_xrl_iters"] = int(nmf.n_iter_)
    try:
        from torchnmf.nmf import NMF as TorchNMF

        torch.manual_seed(0)
        V = Xt.t().contiguous()  # the seed factorises logits.t(): [K, B*L*C]
        model = TorchNMF(V.shape, rank=10)
        t = time.perf_counter()
        n_iter = model.fit(V)
        out["nmf_torchnmf_seconds"] = round(time.perf_counter() - t, 4)
        with torch.no_grad():
            out["nmf_torchnmf_rel_error"] = round(float(torch.linalg.norm(V - model()) / torch.linalg.norm(V)), 5)
        out["nmf_torchnmf_iters"] = int(n_iter)
    except ImportError:
        out["nmf_torchnmf_seconds"] = None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
