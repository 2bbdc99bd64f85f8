"""Benchmark: vectorised MinAtar env steps/s and end-to-end PPO training steps/s; prints one JSON line.

    python bench/ppo_minatar.py                      # breakout, 32 envs, the bundled agents' PPO settings
    python bench/ppo_minatar.py --game freeway --threads 2 --updates 5

``vec_env_steps_per_s``: random actions through :class:`xrl.envs.VecMinAtar` (no network).
``train_steps_per_s``: environment steps per second of :func:`xrl.agents.train_ppo` (rollout + GAE + 3 epochs of
updates), measured after one warm-up update; ``rollout_steps_per_s`` / ``update_samples_per_s`` split it.
``*_per_cpu_s``: the same per second of this process's CPU time (robust when other processes share the cores).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from xrl.agents import PPOConfig, train_ppo
from xrl.envs import make_vec_minatar


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="breakout")
    p.add_argument("--num-envs", type=int, default=32)
    p.add_argument("--num-steps", type=int, default=128)
    p.add_argument("--updates", type=int, default=3, help="timed PPO updates (after one warm-up update)")
    p.add_argument("--env-steps", type=int, default=20_000, help="vectorised random steps to time")
    p.add_argument("--channels", default="8,16,16", help="IMPALA block widths (bundled MinAtar agents: 8,16,16)")
    p.add_argument("--fc-dim", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    venv = make_vec_minatar(args.game, args.num_envs, seed=0)
    venv.reset()
    rng = np.random.default_rng(0)
    n_actions = venv.num_actions
    iters = max(1, args.env_steps // args.num_envs)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(iters):
        venv.step(rng.integers(n_actions, size=args.num_envs))
    env_sps = iters * args.num_envs / (time.perf_counter() - t)
    env_cpu_sps = iters * args.num_envs / max(time.process_time() - c, 1e-9)

    channels = tuple(int(c) for c in args.channels.split(","))
    batch = args.num_envs * args.num_steps
    cfg = PPOConfig(env_id=args.game, total_timesteps=batch * (args.updates + 1), num_envs=args.num_envs,
                    num_steps=args.num_steps, num_minibatches=4, channels=channels, fc_dim=args.fc_dim,
                    device=args.device, progress_bar=False, tensorboard=False)
    c = time.process_time()
    history = train_ppo(cfg).history
    train_cpu = time.process_time() - c
    rows = history[1:]  # the first update is a warm-up; "time" is cumulative, so time the rest from its end
    train_sps = batch * len(rows) / (history[-1]["time"] - history[0]["time"])
    print(json.dumps({
        "bench": "ppo_minatar", "game": args.game, "num_envs": args.num_envs, "num_steps": args.num_steps,
        "channels": list(channels), "fc_dim": args.fc_dim, "threads": args.threads, "device": args.device,
        "vec_env_steps_per_s": round(env_sps, 1), "train_steps_per_s": round(train_sps, 1),
        "vec_env_steps_per_cpu_s": round(env_cpu_sps, 1),
        "train_steps_per_cpu_s": round(batch * len(history) / train_cpu, 1),
        "rollout_steps_per_s": round(float(np.mean([r["charts/rollout_SPS"] for r in rows])), 1),
        "update_samples_per_s": round(float(np.mean([r["charts/update_SPS"] for r in rows])), 1),
        "torch": torch.__version__, "machine": platform.machine(), "cpu_count": os.cpu_count()}))


if __name__ == "__main__":
    main()
