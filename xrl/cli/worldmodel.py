"""``xrl worldmodel train`` (DreamerV2-style agent, resumable) and ``xrl worldmodel explain`` (seed 002)."""
from __future__ import annotations

import argparse
import json

from ._common import add_common, apply_threads, device_of, finish


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("worldmodel", help="DreamerV2 world models on MinAtar and their latent explanations",
                           description="DreamerV2-style world models on MinAtar (seed 002).")
    jobs = group.add_subparsers(dest="job", required=True, metavar="{train,explain}")

    t = jobs.add_parser("train", help="train (or resume) a world-model agent",
                        description="Train a DreamerV2-style agent on a MinAtar game. The run folder (checkpoint/, "
                        "train_state.*, progress.jsonl) resumes with --resume.")
    add_common(t, out=None, quick="200 seed frames + 200 training frames, batch 4 x 8, no evaluation")
    t.add_argument("--out", default=None, help="run folder (default: runs/worldmodel/<game>[_pomdp])")
    t.add_argument("--game", default="freeway", help="MinAtar game (default: freeway)")
    t.add_argument("--no-pomdp", action="store_true", help="train on the full observation")
    t.add_argument("--preset", choices=["cpu", "dreamerv2"], default="cpu",
                   help="cpu: small CPU config (about an hour on 2 cores); dreamerv2: the public MinAtar defaults")
    t.add_argument("--frames", type=int, default=None, help="environment frames after the seed phase")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="checkpoint and stop after this wall time (continue with --resume)")
    t.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes at the end")
    t.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON", help="override config fields")
    t.set_defaults(func=run_train)

    e = jobs.add_parser("explain", help="seed 002: example-based explanations of the latent state",
                        description="Roll out a world-model agent, factorise its categorical latents with NMF and "
                        "write the seed's figure (PNG pages), the most important observations and explanation.json.")
    add_common(e, out="outputs/worldmodel_explain", seed=212, quick="2 rollouts x 12 steps, rank 5")
    e.add_argument("--agent", default="freeway_pomdp",
                   help="bundled world model (freeway_pomdp), checkpoint or run folder, or a DreamerV2 .pth")
    e.add_argument("--batch", type=int, default=8, help="rollouts B")
    e.add_argument("--seq-len", type=int, default=50, help="steps per rollout L")
    e.add_argument("--rank", type=int, default=10, help="NMF rank")
    e.add_argument("--rows-per-page", type=int, default=10, help="steps per figure page")
    e.add_argument("--page-rollouts", type=int, default=1, help="rollouts drawn step by step")
    e.set_defaults(func=run_explain)


def run_train(args: argparse.Namespace) -> int:
    from ..jobs import worldmodel

    apply_threads(args)
    fields = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            fields[key] = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"--set: expected FIELD=JSON, got {item!r}; e.g. --set batch_size=32 "
                             "seed_action_probs='[0.2,0.6,0.2]'") from None
    if args.quick:
        fields = {"seed_steps": 200, "batch_size": 4, "seq_len": 8, "train_every": 8, "save_every": 200,
                  "imagine_starts": 16, **fields}
        args.frames = min(args.frames or 200, 200)
        args.eval_episodes = 0   # a Freeway episode lasts 2,500 steps: the smoke test skips it
    config = worldmodel.make_config(args.game, pomdp=not args.no_pomdp, preset=args.preset, frames=args.frames,
                                    seed=args.seed, **fields)
    out = args.out or f"runs/worldmodel/{args.game}{'' if args.no_pomdp else '_pomdp'}"
    result = worldmodel.train(out, config, resume=args.resume, device=device_of(args),
                              time_limit_minutes=args.time_limit, eval_episodes=args.eval_episodes,
                              log_every=100 if args.quick else 1000)
    return finish(result, out, worldmodel.summary(result))


def run_explain(args: argparse.Namespace) -> int:
    from ..jobs import worldmodel

    apply_threads(args)
    if args.quick:
        args.batch, args.seq_len, args.rank = min(args.batch, 2), min(args.seq_len, 12), min(args.rank, 5)
    result = worldmodel.explain(args.agent, args.out, batch=args.batch, seq_len=args.seq_len, rank=args.rank,
                                seed=args.seed, rows_per_page=args.rows_per_page, page_rollouts=args.page_rollouts,
                                device=device_of(args))
    return finish({"out": args.out, "pngs": result["pngs"], "ground_truth_best": result["ground_truth"].get("best")},
                  args.out, worldmodel.summary(result))
