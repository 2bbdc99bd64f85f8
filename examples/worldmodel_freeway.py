"""Seed 002 as a script: example-based explanations of a DreamerV2 agent's latent state on Freeway (POMDP).

Loads the bundled Freeway POMDP agent (or ``--checkpoint DIR`` / a DreamerV2 ``models_best.pth``), rolls out
``--batch`` episodes of ``--seq-len`` steps with fixed seeds, factorises the posterior categorical activations with NMF
of rank ``--rank``, and writes:

- ``latents_rollout<b>_page<p>.png``: the seed's figure (frame, categoricals + entropy, sampled state, activity),
- ``top_observations.png``: the most important observations of each rollout,
- ``explanation.json``: shapes, timings, top steps, returns, and the best ground-truth matches of each NMF component.

Usage: python examples/worldmodel_freeway.py --out outputs/worldmodel_freeway [--batch 8 --seq-len 50 --rank 10]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib.pyplot as plt
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="outputs/worldmodel_freeway")
    p.add_argument("--checkpoint", default="freeway_pomdp", help="bundled name, checkpoint dir, or .pth file")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=50)
    p.add_argument("--rank", type=int, default=10)
    p.add_argument("--seed", type=int, default=212)
    p.add_argument("--rows-per-page", type=int, default=10)
    p.add_argument("--pages-rollouts", type=int, default=1, help="rollouts drawn as step-by-step pages")
    args = p.parse_args()
    torch.set_num_threads(1)

    from xrl.envs import make_minatar
    from xrl.worldmodel import Evaluator, MinAtarConfig
    from xrl.worldmodel.explain import explain_latents, relate_components
    from xrl.worldmodel.plot import plot_latents, plot_top_observations
    from xrl.worldmodel.pretrained import load_pretrained

    env = make_minatar("freeway", pomdp=True, one_hot_actions=True)
    if args.checkpoint.endswith(".pth"):  # the public DreamerV2 code's file (its MinAtar defaults)
        config = MinAtarConfig(env="freeway", obs_shape=env.observation_space.shape,
                               action_size=env.action_space.shape[0])
        agent = Evaluator(config, "cpu").load_model(config, args.checkpoint).agent
    else:
        agent = load_pretrained(args.checkpoint)

    ex = explain_latents(agent, env, batch=args.batch, seq_len=args.seq_len, rank=args.rank, seed=args.seed)
    gt = relate_components(ex)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pngs = []
    for b in range(min(args.pages_rollouts, args.batch)):
        for fig in plot_latents(ex, rollout=b, rows_per_page=args.rows_per_page, out_dir=out):
            pngs.append(fig.xrl_path)
            plt.close(fig)
    fig = plot_top_observations(ex, out / "top_observations.png")
    pngs.append(fig.xrl_path)
    plt.close(fig)
    report = {"checkpoint": args.checkpoint, **ex.summary(), "pngs": pngs, "ground_truth": gt.to_dict()}
    (out / "explanation.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({"out": str(out), "pngs": len(pngs), "nmf_seconds": report["nmf_seconds"],
                      "best_matches": [b[0] for b in gt.to_dict()["best"]]}))


if __name__ == "__main__":
    main()
