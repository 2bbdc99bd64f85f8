"""Benchmark: what PPO on CoinRun costs per frame on this CPU, by phase and choice; prints one JSON line.

    python bench/ppo_coinrun.py                                   # all sweeps, a few seconds of work each
    python bench/ppo_coinrun.py --rollout-steps 64 --update-samples 4096 --e2e-updates 2
    python bench/ppo_coinrun.py --progress runs/agents/coinrun/progress.csv

The IMPALA CNN stays as trained (16/32/32, fc 256, 15 actions); what varies is how PPO runs it:

* ``rollout``: ``num_envs`` CoinRun envs stepped with the agent's sampled actions (``get_action_and_value`` under
  ``no_grad``, as in :func:`xrl.agents.train_ppo`), for ``num_envs`` in ``--envs``, with and without
  ``channels_last``, at 1 and 2 torch threads. ``env_cpu_ms_per_frame`` is procgen's share.
* ``update``: one PPO minibatch step (forward, clipped losses, backward, gradient clipping, Adam) on rollout frames,
  for each minibatch size in ``--minibatches``, with and without ``channels_last``, at 1 and 2 threads.
* ``estimates``: frames per second of whole PPO iterations predicted from the two phases,
  ``1 / (rollout_s_per_frame + epochs * update_s_per_sample)``, per (minibatch, epochs, layout, threads), using the
  rollout at 16 envs; ``e2e``: :func:`xrl.agents.train_ppo` itself for ``--e2e-updates`` updates (after one warm-up)
  at the running config (16 envs x 128 steps, 8 minibatches, 3 epochs, channels-last), to check the estimate.
* ``return_per_frame``: what the training logs say about sample efficiency (``--progress``, a train_ppo
  ``progress.csv``; and the bundled agent's evaluations): the mean training return over windows of frames and its
  slope. Only one configuration has been trained, so these numbers cannot rank the choices above by return.

Every timing is reported as wall time AND CPU time (``time.process_time``, all threads of this process) per frame or
per sample: on a shared machine the wall time moves with the other processes, while the CPU time of a 1-thread
config barely does. ``load_avg`` and ``other_busy_processes`` record what else was running.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _busy_processes(limit: int = 8) -> list[str]:
    """Other processes using CPU now (from /proc; best effort, Linux only)."""
    out = []
    try:
        import subprocess
        ps = subprocess.run(["ps", "-eo", "pcpu,pid,args", "--sort=-pcpu"], capture_output=True, text=True,
                            timeout=5)
        for line in ps.stdout.splitlines()[1:limit + 1]:
            cpu, pid, cmd = line.split(None, 2)
            if float(cpu) >= 5 and int(pid) != os.getpid():
                out.append(f"{cpu}% {cmd[:90]}")
    except Exception:  # pragma: no cover - ps missing
        pass
    return out


def _timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def bench_rollout(agent, num_envs: int, steps: int, threads: int, channels_last: bool, seed: int = 0) -> dict:
    from xrl.envs import make_coinrun

    torch.set_num_threads(threads)
    model = agent.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    env = make_coinrun(num_envs=num_envs, seed=seed, num_levels=10_000)
    obs, _ = env.reset()
    gen = torch.Generator().manual_seed(seed)
    env_cpu = [0.0]

    def run(n):
        nonlocal obs
        for _ in range(n):
            with torch.no_grad():
                action, _, _, _ = model.get_action_and_value(torch.from_numpy(obs), generator=gen)
            c = time.process_time()
            obs, *_ = env.step(action.numpy())
            env_cpu[0] += time.process_time() - c

    run(4)                                                                  # warm-up
    env_cpu[0] = 0.0
    wall, cpu = _timed(lambda: run(steps))
    frames = steps * num_envs
    env.close()
    return {"num_envs": num_envs, "threads": threads, "channels_last": channels_last, "frames": frames,
            "frames_per_s": round(frames / wall, 1), "cpu_ms_per_frame": round(1e3 * cpu / frames, 3),
            "wall_ms_per_frame": round(1e3 * wall / frames, 3),
            "env_cpu_ms_per_frame": round(1e3 * env_cpu[0] / frames, 3)}


def bench_update(agent, obs: torch.Tensor, minibatch: int, samples: int, threads: int, channels_last: bool,
                 seed: int = 0) -> dict:
    """PPO minibatch steps exactly as train_ppo runs them (losses with the default coefficients)."""
    torch.set_num_threads(threads)
    model = agent.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, eps=1e-5)           # tiny lr: the agent barely moves
    g = torch.Generator().manual_seed(seed)
    n = obs.shape[0]
    b_obs = obs.contiguous(memory_format=torch.channels_last) if channels_last else obs.contiguous()
    b_actions = torch.randint(0, 15, (n,), generator=g)
    b_logprobs = torch.full((n,), -np.log(15.0))
    b_adv, b_ret, b_val = torch.randn(n, generator=g), torch.randn(n, generator=g), torch.zeros(n)

    def step():
        mb = torch.randint(0, n, (minibatch,), generator=g)
        _, newlogprob, entropy, newvalue = model.get_action_and_value(b_obs[mb], b_actions[mb])
        ratio = (newlogprob - b_logprobs[mb]).exp()
        adv = (b_adv[mb] - b_adv[mb].mean()) / (b_adv[mb].std() + 1e-8)
        pg = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 0.8, 1.2)).mean()
        v_clip = b_val[mb] + torch.clamp(newvalue - b_val[mb], -0.2, 0.2)
        v = 0.5 * torch.max((newvalue - b_ret[mb]) ** 2, (v_clip - b_ret[mb]) ** 2).mean()
        loss = pg - 0.01 * entropy.mean() + 0.5 * v
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()

    step()                                                                  # warm-up
    k = max(1, samples // minibatch)
    wall, cpu = _timed(lambda: [step() for _ in range(k)])
    model.eval()
    return {"minibatch": minibatch, "threads": threads, "channels_last": channels_last, "samples": k * minibatch,
            "samples_per_s": round(k * minibatch / wall, 1), "cpu_ms_per_sample": round(1e3 * cpu / (k * minibatch), 3),
            "wall_ms_per_sample": round(1e3 * wall / (k * minibatch), 3)}


def bench_e2e(updates: int, threads: int, seed: int = 0) -> dict:
    from xrl.agents import PPOConfig, train_ppo

    torch.set_num_threads(threads)
    cfg = PPOConfig.coinrun(num_envs=16, num_steps=128, num_minibatches=8, update_epochs=3, seed=seed,
                            total_timesteps=16 * 128 * (updates + 1), progress_bar=False, tensorboard=False)
    c = time.process_time()
    hist = train_ppo(cfg).history
    cpu = time.process_time() - c
    rows = hist[1:]
    frames = 16 * 128 * len(rows)
    wall = hist[-1]["time"] - hist[0]["time"]
    return {"config": "16 envs x 128 steps, 8 minibatches (256), 3 epochs, channels_last", "threads": threads,
            "updates_timed": len(rows), "frames_per_s": round(frames / wall, 1),
            "cpu_ms_per_frame_all_updates": round(1e3 * cpu / (16 * 128 * len(hist)), 3),
            "rollout_frames_per_s": round(float(np.mean([r["charts/rollout_SPS"] for r in rows])), 1),
            "update_samples_per_s": round(float(np.mean([r["charts/update_SPS"] for r in rows])), 1)}


def return_per_frame(progress: str | None) -> dict:
    """Training return against frames from a train_ppo progress.csv, plus the bundled agent's evaluations."""
    out: dict = {}
    try:
        from xrl.agents import bundled_agent_dir
        meta = json.loads((bundled_agent_dir("coinrun") / "agent.json").read_text())["metadata"]
        ev = meta.get("evaluation", {})
        out["bundled"] = {"global_step": meta.get("global_step"),
                          "train_levels_return": ev.get("train_levels/agent", {}).get("mean_return"),
                          "unseen_levels_return": ev.get("unseen_levels/agent", {}).get("mean_return"),
                          "random_train_levels_return": ev.get("train_levels/random", {}).get("mean_return"),
                          "config": {k: meta.get("ppo_config", {}).get(k) for k in
                                     ("num_envs", "num_steps", "num_minibatches", "update_epochs", "learning_rate")}}
    except Exception as exc:  # pragma: no cover - no bundled agent
        out["bundled"] = f"unavailable: {exc}"
    if progress and Path(progress).is_file():
        with open(progress) as f:
            rows = [r for r in csv.DictReader(f) if r.get("charts/episodic_return") not in ("", "nan")]
        steps = np.array([float(r["global_step"]) for r in rows])
        ret = np.array([float(r["charts/episodic_return"]) for r in rows])
        sps = np.array([float(r["charts/SPS"]) for r in rows])
        if len(rows) >= 2:
            edges = np.linspace(steps.min(), steps.max(), 5)
            windows = [{"frames": [int(a), int(b)], "mean_return_last100": round(float(ret[(steps >= a) & (steps <= b)]
                                                                                       .mean()), 2)}
                       for a, b in zip(edges[:-1], edges[1:]) if ((steps >= a) & (steps <= b)).any()]
            slope = np.polyfit(steps / 1e6, ret, 1)[0]
            out["progress"] = {"file": str(progress), "updates": len(rows), "frames": [int(steps.min()),
                                                                                     int(steps.max())],
                               "return_windows": windows, "return_slope_per_million_frames": round(float(slope), 2),
                               "train_frames_per_s_logged": round(float(np.median(sps)), 1)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", default="coinrun", help="bundled name or agent folder (weights to time; any works)")
    p.add_argument("--envs", default="16,32,64")
    p.add_argument("--rollout-steps", type=int, default=32)
    p.add_argument("--minibatches", default="128,256,512,1024,2048")
    p.add_argument("--update-samples", type=int, default=1024, help="samples timed per update config")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--epochs", default="2,3")
    p.add_argument("--e2e-updates", type=int, default=2, help="train_ppo updates timed end to end (0: skip)")
    p.add_argument("--progress", default="runs/agents/coinrun/progress.csv")
    args = p.parse_args()
    from xrl.agents import BUNDLED_AGENTS, load_agent, load_bundled_agent

    agent = load_bundled_agent(args.agent) if args.agent in BUNDLED_AGENTS else load_agent(args.agent)
    threads = [int(t) for t in args.threads.split(",")]
    load_before = os.getloadavg()
    busy = _busy_processes()
    t0 = time.time()
    rollout, frames = [], None
    for n in (int(e) for e in args.envs.split(",")):
        for th in threads:
            for cl in (False, True):
                rollout.append(bench_rollout(agent, n, args.rollout_steps, th, cl))
    from xrl.agents import collect_trajectories
    torch.set_num_threads(1)
    frames = torch.from_numpy(collect_trajectories(agent, "coinrun", num_envs=16, num_steps=64, seed=0,
                                                   env_kwargs={"num_levels": 10_000}).flatten()["obs"])
    update = []
    for mb in (int(m) for m in args.minibatches.split(",")):
        for th in threads:
            for cl in (False, True):
                update.append(bench_update(agent, frames, mb, max(args.update_samples, mb), th, cl))
    estimates = []
    for th in threads:
        for cl in (False, True):
            r = next(x for x in rollout if x["num_envs"] == 16 and x["threads"] == th and x["channels_last"] == cl)
            for u in (x for x in update if x["threads"] == th and x["channels_last"] == cl):
                for ep in (int(e) for e in args.epochs.split(",")):
                    est = {"threads": th, "channels_last": cl, "minibatch": u["minibatch"], "epochs": ep}
                    for kind in ("cpu", "wall"):
                        per_frame = r[f"{kind}_ms_per_frame"] + ep * u[f"{kind}_ms_per_sample"]
                        est[f"frames_per_{kind}_s"] = round(1e3 / per_frame, 1)
                    estimates.append(est)
    best = max((e for e in estimates if e["threads"] == 1 and e["epochs"] == 3), key=lambda e: e["frames_per_cpu_s"])
    e2e = bench_e2e(args.e2e_updates, 1) if args.e2e_updates > 0 else None
    print(json.dumps({
        "bench": "ppo_coinrun", "model": "ImpalaCNN 16/32/32 fc 256", "rollout": rollout, "update": update,
        "estimates": estimates, "best_1_thread_3_epochs": best, "e2e": e2e,
        "return_per_frame": return_per_frame(args.progress), "seconds": round(time.time() - t0, 1),
        "load_avg_before": [round(x, 2) for x in load_before], "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "other_busy_processes": busy, "torch": torch.__version__, "machine": platform.machine(),
        "cpu_count": os.cpu_count()}))


if __name__ == "__main__":
    main()
