"""Feature visualization of a CoinRun agent's NMF directions: lucid's recipe, xrl's legibility recipe, dataset examples.

Draws the comparison figure of docs/vision.md ("Feature visualization that can be read") for any CoinRun agent:

1. samples ``--num-obs`` observations of the agent's own play (every ``--obs-every`` steps of 64 levels) and fits
   :class:`~xrl.vision.LayerNMF` on value attributions at ``--layer`` (``--features`` directions);
2. row 1, lucid's recipe: :func:`~xrl.render.fv.visualize_directions` without colour statistics (ImageNet colour
   decorrelation), a ``1/f`` spectrum, a 2-pixel jitter and no colour prior;
3. row 2, xrl's default (:meth:`LayerNMF.vis_traditional`): colours kept in the observations' range and near their
   palette, a scale-free objective, jitter + scale + rotation, a ``1/f^1.5`` spectrum;
4. row 3, dataset examples of the same directions (:meth:`LayerNMF.vis_dataset_thumbnail`: the 16 observations whose
   strongest position activates the direction most, cropped 8 strides (32 pixels at block2) around it).

    python examples/coinrun_feature_vis.py --agent coinrun --out docs/images/fv_coinrun.png

Every image uses ``--seed``; ``--threads`` sets torch's threads for this script (1 by default).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ROWS = ("before (lucid recipe): 1/f Fourier,\nImageNet colour decorrelation,\n2-pixel jitter: saturated noise",
        "now: palette prior, scale-free\nobjective, jitter + scale + rotation,\n1/f^1.5 spectrum",
        "dataset examples of the same\ndirections (16 strongest frames;\nshown first on the page)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="coinrun", help="bundled agent name or a folder with agent.json")
    ap.add_argument("--out", default="outputs/coinrun_feature_vis.png")
    ap.add_argument("--layer", default="embedder.block2")
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--num-obs", type=int, default=1024)
    ap.add_argument("--obs-every", type=int, default=16)
    ap.add_argument("--steps", type=int, default=512, help="optimisation steps of each feature visualization")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xrl.agents import BUNDLED_AGENTS, load_agent, load_bundled_agent, sample_observations
    from xrl.render.fv import jitter, visualize_directions
    from xrl.render.images import over_white
    from xrl.vision import LayerNMF

    t0 = time.perf_counter()
    agent = load_bundled_agent(args.agent) if args.agent.lower() in BUNDLED_AGENTS else load_agent(args.agent)
    obs = sample_observations(agent, "coinrun", num_obs=args.num_obs, every=args.obs_every, num_envs=64,
                              seed=args.seed)
    nmf = LayerNMF(agent, args.layer, obs, features=args.features, attr_layer_name="fc_value", seed=args.seed)
    before = visualize_directions(agent, args.layer, nmf.channel_dirs, nmf.obs_shape, steps=args.steps,
                                  decay_power=1.0, transforms=[jitter(2)], prior_coeff=0.0, seed=args.seed,
                                  progress=True, desc="lucid recipe")
    now = nmf.vis_traditional(steps=args.steps, seed=args.seed, progress=True)
    examples = [nmf.vis_dataset_thumbnail(f, num_mult=4, expand_mult=8)[0] for f in range(args.features)]

    k = args.features
    fig, axes = plt.subplots(3, k + 1, figsize=(1.6 * (k + 2.2), 5.2),
                             gridspec_kw={"width_ratios": [2.2] + [1] * k, "wspace": 0.04, "hspace": 0.08})
    for r, (label, images) in enumerate(zip(ROWS, (before, now, examples))):
        axes[r, 0].text(0, 0.5, label, va="center", ha="left", fontsize=8.5)
        for c in range(k + 1):
            axes[r, c].set_axis_off()
        for f in range(k):
            axes[r, f + 1].imshow(over_white(images[f], "chw"), interpolation="nearest")
            if r == 0:
                axes[r, f + 1].set_title(f"direction {f}", fontsize=8)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    from PIL import Image
    with Image.open(out) as im:  # a 256-colour palette: a quarter of the bytes, the same picture to the eye
        im = im.convert("RGB").quantize(256)
    im.save(out, optimize=True)
    print(json.dumps({"out": str(out), "agent": args.agent, "layer": args.layer, "features": k,
                      "observations": len(obs), "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
