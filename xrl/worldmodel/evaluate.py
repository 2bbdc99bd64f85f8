"""Evaluate a world-model agent against the random policy; optionally export it as a compact (float16) checkpoint.

Usage::

    python -m xrl.worldmodel.evaluate runs/worldmodel/freeway_pomdp/checkpoint --episodes 100 \\
        [--export xrl/checkpoints/worldmodel/freeway_pomdp --command "<training command>"]

Prints one JSON line: mean/std/min/max return of the agent (posterior-state policy, sampled actions as in the seed,
and greedy) and of the uniformly random policy, over the same env seeds ``seed, seed + 1, ...``. ``--export`` writes
the agent in float16 (weights cast back to float32 on load) and evaluates that exported copy, recording the numbers,
the training frames/time from the run and ``--command`` in ``agent.json``'s ``meta``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..io import load_json
from .agent import DreamerAgent, evaluate, random_returns
from .train import training_state_dir


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Evaluate a DreamerAgent checkpoint against the random policy.")
    p.add_argument("checkpoint", help="checkpoint directory (agent.safetensors + agent.json)")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=10_000, help="env seeds seed, seed+1, ... (disjoint from training)")
    p.add_argument("--no-greedy", action="store_true", help="skip the greedy evaluation")
    p.add_argument("--export", default=None, help="write a float16 copy here and evaluate that copy")
    p.add_argument("--command", default=None, help="training command to record in the exported meta")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from ..envs import make_minatar

    agent = DreamerAgent.load(args.checkpoint)
    cfg = agent.config
    if args.export:
        meta = dict(getattr(agent, "meta", {}))
        agent.save(args.export, meta=meta, dtype=torch.float16)
        agent = DreamerAgent.load(args.export)
    make_env = lambda: make_minatar(cfg.env, pomdp=cfg.pomdp, one_hot_actions=True)
    strip = lambda d: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in d.items() if k != "returns"}
    res = {"checkpoint": args.checkpoint, "episodes": args.episodes, "seed": args.seed,
           "agent_sampled": strip(evaluate(agent, make_env, args.episodes, args.seed))}
    if not args.no_greedy:
        res["agent_greedy"] = strip(evaluate(agent, make_env, args.episodes, args.seed, greedy=True))
    res["random"] = strip(random_returns(make_env(), args.episodes, args.seed))
    if args.export:
        state_dir = training_state_dir(Path(args.checkpoint).parent)
        counters = load_json(state_dir / "train_state.json")["counters"] if state_dir is not None else {}
        meta = dict(getattr(agent, "meta", {}))
        meta.update({"eval": res, "training_command": args.command,
                     "frames": counters.get("frame", meta.get("frames")),
                     "updates": counters.get("updates", meta.get("updates")),
                     "training_minutes": round(counters.get("seconds", 0.0) / 60, 1),
                     "export_command": "python -m xrl.worldmodel.evaluate " + args.checkpoint
                     + f" --episodes {args.episodes} --export {args.export}"})
        agent.save(args.export, meta=meta, dtype=torch.float16)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
