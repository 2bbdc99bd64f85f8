"""Seed 003's walk-through ("Understanding RL Vision", rl_util notebook) on the bundled CoinRun agent.

Steps, as in the seed: layer listing with abbreviated names; LayerNMF on value-function attributions at the third
block's output; feature visualization; dataset thumbnails and the spatial dataset visualization; value estimates of a
few observations; attribution of a trajectory segment (positive/negative, one colour per direction, smoothed with
``conv2d(..., norm_filter(15))``); the edit that projects one direction out of the next layer's kernel (the seed's
formula through ``ParameterEditor``), checked with ``get_var``; and the edit's effect over a few hundred levels
(success rate and episode length, original vs edited).

Differences from the seed, on purpose: observations are channels-first; the seed's lucid layer names '2b'/'3a' do not
exist in an IMPALA CNN (see docs/vision.md), so the layer is ``embedder.block2`` (the paper's NMF layer is the
output of the second-to-last conv stage) and the edited kernel is ``embedder.block3.conv.weight``.

Needs the CoinRun extra (``pip install xrl[coinrun]``) and a bundled CoinRun agent; exits with a message otherwise.
Usage: python examples/rl_vision_coinrun.py --out outputs/rl_vision/coinrun [--levels 200] [--quick]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from xrl.render import attribution_to_rgb, image_grid, save_png
from xrl.vision import (LayerNMF, ParameterEditor, conv2d, get_abbreviator, get_acts, get_attr, get_model_layers,
                        get_var, norm_filter, show, zoom_to)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="outputs/rl_vision/coinrun")
    ap.add_argument("--layer", default="embedder.block2")
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--num-obs", type=int, default=1024)
    ap.add_argument("--levels", type=int, default=200, help="levels (episodes) per agent for the edit")
    ap.add_argument("--direction", type=int, default=None, help="NMF direction to edit out (default: the one with "
                    "the most negative mean value attribution, the paper's 'obstacle' kind)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.num_obs, args.levels = 128, 16
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        from xrl.agents import collect_trajectories, load_bundled_agent, sample_observations
        model = load_bundled_agent("coinrun")
    except Exception as exc:  # no bundled CoinRun agent or no procgen in this environment
        print(f"CoinRun walk-through skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
        (out / "results.json").write_text(json.dumps({"skipped": f"{type(exc).__name__}: {exc}"}))
        return
    t0 = time.time()
    model.eval()
    value_function_name = "fc_value"
    layer_names = get_model_layers(model)
    abbreviator = get_abbreviator(layer_names)
    layer_names = OrderedDict([(name[abbreviator], name) for name in layer_names])
    print(", ".join(layer_names.keys()))

    observations = sample_observations(model, env="coinrun", num_obs=args.num_obs, every=32, num_envs=16, seed=0)
    trajectories = collect_trajectories(model, env="coinrun", num_envs=1, num_steps=128, seed=1)
    show(zoom_to(observations[:8], 200), path=out / "observations.png")

    nmf = LayerNMF(model, args.layer, observations, features=args.features, attr_layer_name=value_function_name)
    show(zoom_to(nmf.vis_traditional(steps=64 if args.quick else 512), 200), path=out / "feature_vis.png")
    show([zoom_to(nmf.vis_dataset_thumbnail(i, num_mult=4, expand_mult=4, max_rep=np.inf)[0], 200).transpose(1, 2, 0)
          for i in range(nmf.features)], path=out / "thumbnails.png")
    show(zoom_to(nmf.vis_dataset(1, subdiv_mult=1, expand_mult=4)[0], 800), path=out / "dataset_vis.png")

    value_functions = get_acts(model, value_function_name, observations[:8])
    show(zoom_to(observations[:8], 200), labels=[f"{v:.3f}" for v in value_functions], path=out / "values.png")

    def attribution_figure(m, name):
        traj = trajectories.obs[0][76:84]
        attr = get_attr(m, value_function_name, args.layer, traj, integrate_steps=10)
        attr_reduced = nmf.transform(np.maximum(attr, 0)) - nmf.transform(np.maximum(-attr, 0))
        attr_reduced *= nmf.channel_dirs.sum(-1)[None, None, None]
        attr_reduced /= np.median(attr_reduced.max(axis=(-3, -2, -1)))
        pos, neg = np.maximum(attr_reduced, 0), np.maximum(-attr_reduced, 0)
        rows = [zoom_to(o, 128) for o in traj]
        for part in (pos, neg):
            smooth = conv2d(part, filter_=norm_filter(15), layout="hwc")
            rows += [zoom_to(s, 128, layout="hwc") for s in attribution_to_rgb(smooth, "hwc")]
        save_png(out / name, image_grid(rows, ncols=len(traj)))
        return attr_reduced

    red = attribution_figure(model, "attribution.png")
    k = args.direction if args.direction is not None else int(np.argmin(red.mean((0, 1, 2))))
    edited_model = copy.deepcopy(model)
    editor = ParameterEditor(edited_model)
    kernel_name = "embedder.block3.conv.weight"          # the seed's layer_names["3a"] kernel, in this network
    kernel = editor[kernel_name]                          # [kh, kw, in, out], as lucid's TF kernels
    saw_dir = nmf.channel_dirs[k][None, None, :, None].copy()
    saw_dir /= np.linalg.norm(saw_dir)
    kernel = kernel - saw_dir * (saw_dir * kernel).sum(axis=-2, keepdims=True)
    editor[kernel_name] = kernel
    norms = [float(np.linalg.norm(get_var(model, kernel_name))), float(np.linalg.norm(get_var(edited_model,
                                                                                             kernel_name)))]
    attribution_figure(edited_model, "attribution_edited.png")

    from xrl.agents import evaluate
    from xrl.envs import make_coinrun
    res = {"layer": args.layer, "features": args.features, "edited_direction": k, "kernel_norms": norms,
           "channel_dirs_shape": list(nmf.channel_dirs.shape)}
    for name, m in (("original", model), ("edited", edited_model)):
        r = evaluate(m, make_coinrun(num_envs=8, seed=1000), num_episodes=args.levels, seed=1000)
        res[name] = r.summary()
    res["seconds"] = time.time() - t0
    (out / "results.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
