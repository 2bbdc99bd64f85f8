"""Train (resumably), evaluate and export the bundled agents.

    python examples/train_agents.py train freeway --total-timesteps 3000000       # resumes runs/agents/freeway
    python examples/train_agents.py export freeway --episodes 100                 # evaluate + write the bundle

``train`` writes runs/agents/<name>/ (progress.csv, tensorboard/, checkpoint/) and can be stopped and re-run at any
time: it continues from the last checkpoint. ``export`` evaluates the checkpoint and uniformly random actions over
``--episodes`` episodes and writes xrl/checkpoints/agents/<name>/ (fp16 weights, agent.json, README.md).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from xrl import io
from xrl.agents import PPOConfig, evaluate, load_agent, save_agent, train_ppo
from xrl.envs import make_vec_env

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "xrl" / "checkpoints" / "agents"

MINATAR = dict(num_envs=32, num_steps=128, num_minibatches=4, channels=(16, 32, 32), fc_dim=256, checkpoint_every=10)

CONFIGS = {
    # MinAtar: 32 envs x 128 steps, 4 minibatches of 1,024, 3 epochs; the paper's IMPALA width (16/32/32, fc 256):
    # ~1,100 frames/s on 2 CPU threads, and its NMF directions match the game's objects better than half width's
    "freeway": lambda **kw: PPOConfig(env_id="freeway", **{**MINATAR, **kw}),
    "breakout": lambda **kw: PPOConfig(env_id="breakout", **{**MINATAR, **kw}),
    # CoinRun: procgen-paper PPO settings, easy mode, 10,000 training levels
    "coinrun": lambda **kw: PPOConfig.coinrun(checkpoint_every=1, **kw),
}


def cmd_train(args) -> None:
    torch.set_num_threads(args.threads)
    overrides = {"total_timesteps": args.total_timesteps, "seed": args.seed, "progress_bar": not args.no_bar,
                 "device": args.device}
    if args.num_envs:
        overrides["num_envs"] = args.num_envs
    if args.num_steps:
        overrides["num_steps"] = args.num_steps
    if args.channels:
        overrides["channels"] = tuple(args.channels)
    if args.fc_dim:
        overrides["fc_dim"] = args.fc_dim
    config = CONFIGS[args.name](**overrides)
    out = Path(args.out or ROOT / "runs" / "agents" / args.name)
    t0 = time.time()
    # --time-limit: stop cleanly after the first update past the limit (checkpoint written, resumable)
    in_time = (lambda row: time.time() - t0 < args.time_limit * 60) if args.time_limit else None
    result = train_ppo(config, out, resume=True, callback=in_time)
    timing = io.load_json(out / "timing.json") if (out / "timing.json").is_file() else {"seconds": 0.0, "runs": []}
    timing["seconds"] += time.time() - t0
    timing["runs"].append({"command": "python " + " ".join(map(shlex.quote, sys.argv)), "seconds": round(time.time() - t0, 1),
                           "threads": args.threads, "global_step": result.global_step})
    io.save_json(out / "timing.json", timing)
    print(json.dumps({"name": args.name, "global_step": result.global_step, "seconds": round(timing["seconds"], 1)}))


def cmd_export(args) -> None:
    torch.set_num_threads(args.threads)
    out = Path(args.out or ROOT / "runs" / "agents" / args.name)
    agent = load_agent(out / "checkpoint")
    meta = agent.metadata
    config = meta["ppo_config"]
    env_kwargs = dict(config["env_kwargs"])
    n = 50 if args.name == "freeway" else 20  # Freeway episodes last 2,500 steps: batch more envs
    evals = {}
    if args.name == "coinrun":
        # training used levels [0, 10000); held-out levels are 1,000,000 ... 1,000,499
        test_kwargs = {**env_kwargs, "num_levels": 500, "start_level": 1_000_000}
        settings = {"train_levels": (env_kwargs, args.episodes), "unseen_levels": (test_kwargs, args.unseen_episodes)}
    else:
        settings = {"env": (env_kwargs, args.episodes)}
    for label, (kw, episodes) in settings.items():
        if episodes <= 0:
            continue
        for who, a in (("agent", agent), ("random", None)):
            t = time.time()
            res = evaluate(a, make_vec_env(config["env_id"], n, seed=10_000, **kw), num_episodes=episodes,
                           seed=10_000)
            evals[f"{label}/{who}"] = {**res.summary(), "seconds": round(time.time() - t, 1)}
            print(label, who, evals[f"{label}/{who}"], flush=True)
    timing = io.load_json(out / "timing.json") if (out / "timing.json").is_file() else {}
    dest = BUNDLE / args.name
    save_agent(dest, agent, {"env_id": config["env_id"], "env_kwargs": env_kwargs, "global_step": meta["global_step"],
                             "ppo_config": config, "evaluation": evals,
                             "training_seconds": round(timing.get("seconds", 0.0), 1)}, half=True)
    # fp16 weights must still reproduce the policy: check logits against the fp32 checkpoint
    check = load_agent(dest)
    venv = make_vec_env(config["env_id"], 8, seed=0, **env_kwargs)
    obs, _ = venv.reset()
    with torch.no_grad():
        diff = (check(torch.from_numpy(obs))[0] - agent(torch.from_numpy(obs))[0]).abs().max().item()
    runs = timing.get("runs", [])
    counts = sorted({r.get("threads", 1) for r in runs}) or [1]
    threads = " / ".join(map(str, counts)) + (" thread" if counts == [1] else " threads")
    threads += " by run" if len(counts) > 1 else ""
    lines = [f"# Bundled agent: {args.name}", "",
             f"Environment: `{config['env_id']}` with `{json.dumps(env_kwargs)}`; IMPALA CNN "
             f"{tuple(config['channels'])}, fc {config['fc_dim']}; weights stored as float16 "
             f"(max |logit| change vs float32: {diff:.2e}).", "",
             f"Trained for {meta['global_step']:,} environment steps in {timing.get('seconds', 0) / 3600:.2f} h on a "
             f"shared 2-core CPU (torch 2.13, {threads}), with these commands (resumable; run from the repo root):", "",
             "```"]
    lines += [r["command"] if r["command"].startswith("python") else "python " + r["command"]
              for r in runs]
    lines += [" ".join(["python", "examples/train_agents.py"] + sys.argv[1:]), "```", "",
              f"Evaluation (episodes split evenly over {n} envs, each contributing its first episodes; sampled "
              "actions; seed 10000" + ("; unseen_levels = the 500 held-out levels 1,000,000-1,000,499, training "
                                       "used levels 0-9,999" if args.name == "coinrun" else "") + "):", "", "| setting | policy | episodes | mean return | std | sem | mean length | success |",
              "|---|---|---|---|---|---|---|---|"]
    for key, v in evals.items():
        label, who = key.split("/")
        lines.append(f"| {label} | {who} | {v['episodes']} | {v['mean_return']:.2f} | {v['std_return']:.2f} | {v['sem_return']:.2f} | "
                     f"{v['mean_length']:.0f} | {v.get('success_rate', '')} |")
    lines += ["", "PPO config:", "", "```json", json.dumps(config, indent=1), "```", ""]
    (dest / "README.md").write_text("\n".join(lines))
    print(json.dumps({"name": args.name, "evaluation": evals, "fp16_max_logit_diff": diff}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("name", choices=sorted(CONFIGS))
    t.add_argument("--total-timesteps", type=int, default=3_000_000)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--num-envs", type=int, default=0)
    t.add_argument("--num-steps", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--channels", type=int, nargs=3, default=None,
                   help="IMPALA block widths (default: the paper's 16 32 32; 8 16 16 trains ~2x faster)")
    t.add_argument("--fc-dim", type=int, default=0, help="embedding width (default: the paper's 256)")
    t.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    t.add_argument("--out", default=None)
    t.add_argument("--no-bar", action="store_true")
    t.add_argument("--time-limit", type=float, default=0, help="minutes; stop (resumably) after the first update "
                   "past it")
    e = sub.add_parser("export")
    e.add_argument("name", choices=sorted(CONFIGS))
    e.add_argument("--episodes", type=int, default=100)
    e.add_argument("--unseen-episodes", type=int, default=500, help="CoinRun: episodes on held-out levels")
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--out", default=None)
    args = p.parse_args()
    cmd_train(args) if args.cmd == "train" else cmd_export(args)


if __name__ == "__main__":
    main()
