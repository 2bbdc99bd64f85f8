"""Understanding RL Vision on MinAtar agents, measured against ground-truth object channels.

For a trained IMPALA agent (bundled Freeway/Breakout, or --checkpoint):
1. LayerNMF (activations, and value-function attributions as in the paper) at every block output and the final ReLU;
   for each NMF direction, the best correlation between its spatial map and an object channel
   (xrl.metrics.interpretability), and how many different objects are matched with correlation >= 0.5.
2. Figures: dataset thumbnails per direction, spatial dataset visualization, feature visualization, and the positive /
   negative value attribution of a trajectory segment, one colour per NMF direction.
3. The edit: project the direction that best matches the target object (Freeway: car, Breakout: ball) out of the next
   convolution's kernel; compare paired rollouts of original vs edited agent (return, episode length, deaths by that
   object) and how much the OTHER directions' attributions change.

Writes ``<out>/results.json`` and PNGs. Usage:
    python examples/rl_vision_minatar.py --game freeway --out outputs/rl_vision/freeway [--quick]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from xrl.metrics.interpretability import best_object_matches, count_matched_objects, object_correlations
from xrl.render import channel_colors, image_grid, observation_rgb, save_png, zoom_to
from xrl.vision import LayerNMF, compare_rollouts, conv2d, get_attr, norm_filter, project_out_direction

TARGET = {"freeway": "car", "breakout": "ball"}
LAYERS = ["embedder.block1.conv", "embedder.block1", "embedder.block2", "embedder.relu_after_convs"]


def load_agent(args):
    if args.checkpoint:
        from xrl.agents import load_agent as load
        return load(args.checkpoint), f"checkpoint {args.checkpoint}"
    from xrl.agents import load_bundled_agent
    return load_bundled_agent(args.game), f"bundled agent '{args.game}'"


def reduced_attr(nmf: LayerNMF, attr: np.ndarray) -> np.ndarray:
    """Seed 003's recipe: positive minus negative part projected on the directions, scaled by direction norms."""
    red = nmf.transform(np.maximum(attr, 0)) - nmf.transform(np.maximum(-attr, 0))    # [B, h, w, F]
    return red * nmf.channel_dirs.sum(-1)[None, None, None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--game", default="freeway", choices=sorted(TARGET))
    ap.add_argument("--checkpoint", default=None, help="agent folder (default: the bundled agent for --game)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--num-obs", type=int, default=1024)
    ap.add_argument("--episodes", type=int, default=100, help="paired episodes per agent for the edit")
    ap.add_argument("--edit-layer", default="embedder.block1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.num_obs, args.episodes = min(args.num_obs, 128), min(args.episodes, 8)
    out = Path(args.out or f"outputs/rl_vision/{args.game}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    from xrl.agents import collect_trajectories, sample_observations
    from xrl.envs import make_minatar
    agent, source = load_agent(args)
    agent.eval()
    env = make_minatar(args.game)
    names = list(env.unwrapped.channel_names)
    obs = sample_observations(agent, env=args.game, num_obs=args.num_obs, every=16, num_envs=16, seed=args.seed)
    obs = obs.astype(np.float32)                                        # [N, C, 10, 10]; the object channels
    res = {"game": args.game, "agent": source, "channel_names": names, "num_obs": int(len(obs)),
           "features": args.features, "layers": {}}
    if hasattr(agent, "metadata"):
        res["agent_metadata"] = {k: agent.metadata.get(k) for k in ("global_step", "evaluation") if k in agent.metadata}

    nmfs = {}
    for layer in LAYERS:
        res["layers"][layer] = {}
        for mode in ("activations", "value_attribution"):
            nmf = LayerNMF(agent, layer, obs, features=args.features, seed=args.seed,
                           attr_layer_name="fc_value" if mode == "value_attribution" else None,
                           nmf_kwargs={"max_iter": 500})
            maps = {"activation_maps": nmf.acts_reduced}
            if mode == "value_attribution":
                maps["attribution_maps"] = reduced_attr(nmf, nmf.attrs.transpose(0, 3, 1, 2))
            entry = {}
            for kind, m in maps.items():
                corr = object_correlations(m, obs)
                entry[kind] = {"best": best_object_matches(corr, names),
                               "matched_objects_at_0.5": count_matched_objects(corr, 0.5, names),
                               "corr": np.round(corr, 4).tolist()}
            res["layers"][layer][mode] = entry
            nmfs[(layer, mode)] = nmf
            m = entry["activation_maps"]["matched_objects_at_0.5"]
            print(f"{layer:28s} {mode:18s} objects matched >= 0.5 (activation maps): {m['count']} {m['pairs']}",
                  flush=True)

    # the most interpretable layer: most objects matched (activation maps of either mode), then highest mean corr
    def score(key):
        e = res["layers"][key[0]][key[1]]["activation_maps"]
        return (e["matched_objects_at_0.5"]["count"], np.mean([b["corr"] for b in e["best"]]))
    best_key = max(nmfs, key=score)
    res["most_interpretable"] = {"layer": best_key[0], "mode": best_key[1], "score": list(map(float, score(best_key)))}

    # ---------------------------------------------------------------- figures
    nmf = nmfs[(args.edit_layer, "value_attribution")]
    thumbs = [nmf.vis_dataset_thumbnail(i, num_mult=3, expand_mult=3)[0] for i in range(args.features)]
    save_png(out / "thumbnails.png", image_grid([zoom_to(t, 90, layout="chw") for t in thumbs], ncols=args.features,
                                                layout="chw"))
    spatial = [nmf.vis_dataset(i, subdiv_mult=1, expand_mult=2)[0] for i in range(args.features)]
    save_png(out / "dataset_vis.png", image_grid([zoom_to(s, 160, layout="chw") for s in spatial], ncols=4,
                                                 layout="chw"))
    fv = nmf.vis_traditional(steps=64 if args.quick else 256)
    save_png(out / "feature_vis.png", image_grid([zoom_to(observation_rgb(f, "chw"), 80, layout="hwc") for f in fv],
                                                 ncols=args.features, layout="hwc"))
    traj = collect_trajectories(agent, env=args.game, num_envs=1, num_steps=40, seed=args.seed + 1)
    seg = traj.obs[0, 16:24].astype(np.float32)                         # [8, C, 10, 10]

    def attribution_rows(model, scale=None):
        """Rows: observations, positive and negative value attribution (one colour per direction, disc-smoothed);
        the colour scale is fixed by the original agent so that the edited agent's rows are comparable."""
        attr = get_attr(model, "fc_value", args.edit_layer, seg, integrate_steps=10)
        red = reduced_attr(nmf, attr)
        pos, neg = np.maximum(red, 0), np.maximum(-red, 0)
        smooth = lambda a: conv2d(a, filter_=norm_filter(3), layout="hwc")  # noqa: E731
        sp, sn = smooth(pos), smooth(neg)
        if scale is None:
            scale = max(float(np.median(sp.max(axis=(-3, -2, -1)))), float(np.median(sn.max(axis=(-3, -2, -1)))),
                        1e-12)
        cols = channel_colors(args.features)
        paint = lambda a: [zoom_to(np.clip((x / scale) @ cols, 0, 1), 80, layout="hwc") for x in a]  # noqa: E731
        return [zoom_to(observation_rgb(o, "chw"), 80, layout="hwc") for o in seg] + paint(sp) + paint(sn), red, scale
    rows, red_orig, scale = attribution_rows(agent)
    save_png(out / "attribution.png", image_grid(rows, ncols=len(seg), layout="hwc"))
    colours = {f"direction_{i}": c for i, c in enumerate(np.round(
        channel_colors(args.features), 3).tolist())}
    res["figures"] = {"thumbnails": "thumbnails.png", "dataset_vis": "dataset_vis.png",
                      "feature_vis": "feature_vis.png", "attribution": "attribution.png (rows: observation, "
                      "positive, negative value attribution; one colour per direction)", "direction_colours": colours}

    # ---------------------------------------------------------------- the edit
    target = TARGET[args.game]
    ent = res["layers"][args.edit_layer]["value_attribution"]["activation_maps"]
    corr = np.asarray(ent["corr"])
    ti = names.index(target)
    k = int(corr[:, ti].argmax())
    edited = project_out_direction(agent, args.edit_layer, nmf.channel_dirs[k], example_obs=obs[:2])
    rows_e, red_edit, _ = attribution_rows(edited, scale)
    save_png(out / "attribution_edited.png", image_grid(rows_e, ncols=len(seg), layout="hwc"))
    # attribution change per direction on the NMF observations (mean |reduced attribution|)
    a0 = np.abs(reduced_attr(nmf, get_attr(agent, "fc_value", args.edit_layer, obs[:256]))).mean((0, 1, 2))
    a1 = np.abs(reduced_attr(nmf, get_attr(edited, "fc_value", args.edit_layer, obs[:256]))).mean((0, 1, 2))
    change = (a1 - a0) / np.maximum(a0, 1e-12)
    others = [i for i in range(args.features) if i != k]
    roll = compare_rollouts({"original": agent, "edited": edited}, args.game, n_episodes=args.episodes,
                            seed=args.seed + 100, max_steps=3000)
    res["edit"] = {"layer": args.edit_layer, "next_layer": edited.edit_info["next_layer"], "target_object": target,
                   "direction": k, "direction_corr_with_target": float(corr[k, ti]),
                   "attr_change_per_direction": np.round(change, 4).tolist(),
                   "max_abs_attr_change_other_directions": float(np.abs(change[others]).max()),
                   "rollouts": roll,
                   "event": {"freeway": "car collisions per episode",
                             "breakout": "ball lost (episode end) per episode"}[args.game]}
    res["seconds"] = time.time() - t0
    (out / "results.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({"game": args.game, "most_interpretable": res["most_interpretable"],
                      "edit": {k2: v for k2, v in res["edit"].items() if k2 != "attr_change_per_direction"}}))


if __name__ == "__main__":
    main()
