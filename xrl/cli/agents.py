"""``xrl agents train`` (resumable IMPALA PPO) and ``xrl agents evaluate`` (evaluation table, optional bundle)."""
from __future__ import annotations

import argparse
import math

from ._common import add_common, apply_threads, command_line, device_of, finish


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("agents", help="train / evaluate IMPALA PPO agents (MinAtar, CoinRun)",
                           description="Train IMPALA PPO agents resumably; evaluate and bundle them.")
    jobs = group.add_subparsers(dest="job", required=True, metavar="{train,evaluate}")

    t = jobs.add_parser("train", help="train (or resume) a PPO agent in runs/agents/<name>",
                        description="Train an IMPALA CNN with PPO. The run folder (checkpoint/ with agent, optimizer "
                        "and state files, progress.csv, timing.json) resumes when the same command runs again.")
    t.add_argument("env", help="a MinAtar game (freeway, breakout, asterix, seaquest, space_invaders) or coinrun")
    add_common(t, out=None, seed=1, quick="4 envs x 32 steps, 2 updates")
    t.add_argument("--out", default=None, help="run folder (default: runs/agents/<env>)")
    t.add_argument("--total-timesteps", type=int, default=3_000_000, help="environment steps in total")
    t.add_argument("--num-envs", type=int, default=None, help="parallel envs (default: 32 MinAtar, 64 CoinRun)")
    t.add_argument("--num-steps", type=int, default=None, help="steps per env per rollout (default: 128 / 256)")
    t.add_argument("--channels", type=int, nargs=3, default=None, help="IMPALA widths (default: 16 32 32)")
    t.add_argument("--fc-dim", type=int, default=None, help="embedding width (default: 256)")
    t.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="stop cleanly (checkpoint written, resumable) after the first update past this wall time")
    t.add_argument("--init-from", default=None, metavar="AGENT",
                   help="start a new run from a bundled agent (freeway, breakout, coinrun) or an agent folder, "
                   "with a fresh optimizer")
    t.add_argument("--snapshot-every", type=int, default=0, metavar="FRAMES",
                   help="also keep the agent every this many frames in OUT/snapshots/<step>/ (default: none)")
    t.set_defaults(func=run_train)

    e = jobs.add_parser("evaluate", help="evaluate an agent against random actions; optionally bundle it",
                        description="Run an agent and uniformly random actions over the same episodes; write "
                        "evaluation.json and evaluation.md; with --bundle also a bundle folder (float16 weights, "
                        "agent.json, README.md with the training commands and the table).")
    e.add_argument("agent", help="bundled agent name (freeway, breakout, coinrun), agent folder or run folder")
    add_common(e, out="outputs/agents_evaluate", seed=10_000, quick="4 episodes on 2 envs, no held-out levels")
    e.add_argument("--episodes", type=int, default=100, help="episodes per policy")
    e.add_argument("--unseen-episodes", type=int, default=500, help="CoinRun: episodes on held-out levels")
    e.add_argument("--num-envs", type=int, default=None, help="parallel envs (default: 50 Freeway, else 20)")
    e.add_argument("--bundle", default=None, metavar="DIR", help="also write the agent as a bundle folder here")
    e.set_defaults(func=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    from ..jobs import agents

    apply_threads(args)
    out = args.out or f"runs/agents/{args.env}"
    if args.quick:
        args.num_envs, args.num_steps = 4, 32
        args.total_timesteps = min(args.total_timesteps, 2 * 4 * 32)
        args.channels, args.fc_dim = args.channels or [8, 16, 16], args.fc_dim or 64
    result = agents.train(args.env, out, total_timesteps=args.total_timesteps, seed=args.seed,
                          num_envs=args.num_envs, num_steps=args.num_steps, channels=args.channels,
                          fc_dim=args.fc_dim, device=device_of(args), time_limit_minutes=args.time_limit,
                          init_from=args.init_from, snapshot_every=args.snapshot_every, progress=args.progress,
                          command=command_line(args))
    result = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()}
    return finish(result, out, agents.summary(result))


def run_evaluate(args: argparse.Namespace) -> int:
    from ..jobs import agents

    apply_threads(args)
    if args.quick:
        args.episodes, args.unseen_episodes, args.num_envs = min(args.episodes, 4), 0, 2
    result = agents.evaluate(args.agent, args.out, episodes=args.episodes, unseen_episodes=args.unseen_episodes,
                             num_envs=args.num_envs, seed=args.seed, bundle_to=args.bundle, device=device_of(args),
                             command=command_line(args))
    return finish(result, args.out, agents.summary(result))
