"""``xrl vision interface`` (the Understanding-RL-Vision page) and ``xrl vision walkthrough`` (seed 003's figures)."""
from __future__ import annotations

import argparse

from ._common import add_common, apply_threads, device_of, finish


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("vision", help="Understanding RL Vision: the interface page and the walk-through figures",
                           description="Understanding RL Vision (Hilton et al., 2020) for IMPALA agents.")
    jobs = group.add_subparsers(dest="job", required=True, metavar="{interface,walkthrough}")

    i = jobs.add_parser("interface", help="build the interactive interface (one offline HTML page) for an agent",
                        description="Build the Understanding-RL-Vision interface of an agent: trajectories, NMF "
                        "attribution, feature visualization, in one offline folder with index.html.")
    from ..vision.interface import add_cli_arguments

    add_cli_arguments(i)            # --agent --out --seed --device --quick --threads --no-progress and the page's own
    i.set_defaults(func=run_interface)

    w = jobs.add_parser("walkthrough", help="seed 003's walk-through figures (NMF, feature vis, attribution, edit)",
                        description="The seed-003 walk-through for an agent: LayerNMF of value attributions, feature "
                        "and dataset visualizations, attribution of a trajectory segment, the edit that removes one "
                        "direction, paired rollouts; MinAtar agents also get object-channel scores per layer.")
    w.add_argument("--agent", default="breakout",
                   help="bundled agent (breakout, freeway, coinrun) or an agent folder (default: breakout)")
    add_common(w, out=None, quick="128 observations, 8 episodes, 32 feature-vis steps, one scored layer set skipped")
    w.add_argument("--out", default=None, help="output folder (default: outputs/vision_walkthrough/<agent>)")
    w.add_argument("--layer", default=None, help="NMF layer (default: embedder.block1 MinAtar, embedder.block2 "
                   "CoinRun)")
    w.add_argument("--features", type=int, default=8, help="NMF directions")
    w.add_argument("--num-obs", type=int, default=1024, help="observations for NMF")
    w.add_argument("--episodes", type=int, default=100, help="paired episodes per agent for the edit")
    w.add_argument("--integrate-steps", type=int, default=10, help="integrated-gradient steps")
    w.add_argument("--no-scores", dest="scores", action="store_false",
                   help="MinAtar: skip the object-channel scores of four layers")
    w.set_defaults(func=run_walkthrough)


def run_interface(args: argparse.Namespace) -> int:
    from ..vision.interface import run_cli

    index = run_cli(args)                    # applies --threads itself
    return finish({"index": str(index)}, index)


def run_walkthrough(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..jobs import vision

    apply_threads(args)
    out = args.out or f"outputs/vision_walkthrough/{Path(str(args.agent)).name}"
    fv_steps = 256
    if args.quick:
        args.num_obs, args.episodes, fv_steps, args.scores = min(args.num_obs, 128), min(args.episodes, 8), 32, False
    res = vision.walkthrough(args.agent, out, layer=args.layer, features=args.features, num_obs=args.num_obs,
                             episodes=args.episodes, integrate_steps=args.integrate_steps, fv_steps=fv_steps,
                             score_layers=args.scores, seed=args.seed, device=device_of(args),
                             progress=args.progress)
    return finish({"out": out, "figures": sorted(res["figures"]),
                   "edit": {k: v for k, v in res["edit"].items() if k != "attr_change_per_direction"}}, out,
                  vision.summary(res))
