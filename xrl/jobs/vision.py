"""Seed 003's walk-through ("Understanding RL Vision", lucid's ``rl_util`` notebook) as figures, for any IMPALA agent.

For every agent (bundled ``"breakout"`` / ``"freeway"`` / ``"coinrun"`` or an agent folder), the seed's steps:
LayerNMF of value-function attributions at a layer, feature visualization, dataset thumbnails and the spatial dataset
visualization, value estimates of a few observations, the attribution of a trajectory segment (positive / negative,
one colour per NMF direction, disc-smoothed), the edit that projects one direction out of the next convolution's
kernel, the same attribution for the edited agent, and paired rollouts of both agents.

For MinAtar agents each NMF direction is also scored against the game's ground-truth object channels
(:mod:`xrl.metrics.interpretability`) at four layers, for activations and for value attributions, and the edited
direction is the one that best matches the game's target object (Freeway: car, Breakout: ball).

Differences from the seed, on purpose: observations are channels-first; the seed's lucid layer names '2b'/'3a' do not
exist in an IMPALA CNN (docs/vision.md), so the NMF layer is ``embedder.block2`` for CoinRun and
``embedder.block1`` for MinAtar's 10x10 boards, and the edited kernel is the next convolution's.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import io
from .._validation import check_scalar

#: per MinAtar game: the object whose direction is edited out
EDIT_TARGET = {"freeway": "car", "breakout": "ball"}
#: layers scored against object channels on MinAtar boards
MINATAR_LAYERS = ["embedder.block1.conv", "embedder.block1", "embedder.block2", "embedder.relu_after_convs"]
VALUE_HEAD = "fc_value"


def reduced_attr(nmf, attr: np.ndarray) -> np.ndarray:
    """Seed 003's recipe: positive minus negative part projected on the NMF directions, scaled by their norms.

    ``attr [B, C, h, w]`` -> ``[B, h, w, F]``.
    """
    red = nmf.transform(np.maximum(attr, 0)) - nmf.transform(np.maximum(-attr, 0))    # [B, h, w, F]
    return red * np.asarray(nmf.channel_dirs).sum(-1)[None, None, None]


def attribution_rows(model, nmf, layer: str, frames: np.ndarray, *, features: int, smooth: int,
                     scale: float | None = None, integrate_steps: int = 10):
    """Figure rows of the seed: observations, positive and negative value attribution (one colour per direction,
    disc-smoothed with ``norm_filter(smooth)``). The colour scale is the median of the per-frame maxima unless
    ``scale`` is given (pass the original agent's to compare an edited agent). Returns ``(rows, reduced, scale)``,
    rows of ``[H, W, 3]`` images."""
    from ..render import channel_colors, observation_rgb
    from ..vision import conv2d, get_attr, norm_filter

    attr = get_attr(model, VALUE_HEAD, layer, frames, integrate_steps=integrate_steps)
    red = reduced_attr(nmf, attr)
    pos, neg = np.maximum(red, 0), np.maximum(-red, 0)
    sp = conv2d(pos, filter_=norm_filter(smooth), layout="hwc")
    sn = conv2d(neg, filter_=norm_filter(smooth), layout="hwc")
    if scale is None:
        scale = max(float(np.median(sp.max(axis=(-3, -2, -1)))), float(np.median(sn.max(axis=(-3, -2, -1)))), 1e-12)
    cols = channel_colors(features)

    def paint(a):
        return [np.clip((x / scale) @ cols, 0, 1) for x in a]

    return [[observation_rgb(o, "chw") for o in frames], paint(sp), paint(sn)], red, scale


def walkthrough(agent: str | Path, out: str | Path, *, layer: str | None = None, features: int = 8,
                num_obs: int = 1024, episodes: int = 100, integrate_steps: int = 10, fv_steps: int = 256,
                score_layers: bool = True, seed: int = 0, device: Any = None, progress: bool = True) -> dict[str, Any]:
    """Write the seed-003 walk-through figures for ``agent`` to ``out``; return (and write) ``results.json``.

    Parameters
    ----------
    agent : str or path
        ``"breakout"``, ``"freeway"``, ``"coinrun"`` (bundled; CoinRun needs ``xrl[coinrun]``) or an agent folder.
    out : path
        Output folder.
    layer : str, optional
        NMF / attribution layer (default ``embedder.block1`` on MinAtar, ``embedder.block2`` on CoinRun).
    features : int, default 8
        NMF directions (the paper's 8).
    num_obs : int, default 1024
        Observations sampled from the agent's play for NMF.
    episodes : int, default 100
        Paired episodes per agent (original / edited) in the rollout comparison.
    integrate_steps : int, default 10
        Integrated-gradient steps (the seed's ``integrate_steps``).
    fv_steps : int, default 256
        Optimisation steps of the feature visualization.
    score_layers : bool, default True
        MinAtar: score NMF directions against object channels at four layers (8 more NMF fits).
    seed : int
        Seed of the observation sample, trajectories, NMF and rollouts.
    """
    from ..agents import collect_trajectories, sample_observations
    from ..render import channel_colors, observation_rgb
    from ..render.labelled import labelled_grid
    from ..vision import (LayerNMF, compare_rollouts, get_abbreviator, get_acts, get_attr, get_model_layers,
                          project_out_direction)
    from .agents import resolve_agent

    check_scalar("features", features, int, low=1)
    check_scalar("num_obs", num_obs, int, low=16)
    check_scalar("episodes", episodes, int, low=1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model = resolve_agent(agent, device).eval()
    env_id = getattr(model, "metadata", {}).get("env_id", "coinrun" if tuple(model.obs_shape[1:]) == (64, 64)
                                                else None)
    minatar = env_id != "coinrun"
    layer = layer or ("embedder.block1" if minatar else "embedder.block2")
    names = get_model_layers(model)
    abbreviator = get_abbreviator(names)
    res: dict[str, Any] = {"agent": str(agent), "env_id": env_id, "layer": layer, "features": features,
                           "layer_names": [n[abbreviator] for n in names]}
    if getattr(model, "metadata", None):
        res["agent_metadata"] = {k: model.metadata.get(k) for k in ("global_step", "evaluation") if k in model.metadata}

    # observations for NMF (sampled every k-th step) and one contiguous trajectory
    obs = sample_observations(model, env=env_id, num_obs=num_obs, every=16 if minatar else 32, num_envs=16,
                              seed=seed)
    obs = obs.astype(np.float32) if minatar else obs
    res["num_obs"] = int(len(obs))
    traj = collect_trajectories(model, env=env_id, num_envs=1, num_steps=40 if minatar else 128, seed=seed + 1)
    seg = traj.obs[0, 16:24] if minatar else traj.obs[0, 76:84]
    seg = seg.astype(np.float32) if minatar else seg
    if minatar and score_layers:
        res["object_scores"] = _score_layers(model, obs, features, seed, env_id)

    nmf = LayerNMF(model, layer, obs, features=features, attr_layer_name=VALUE_HEAD, seed=seed,
                   nmf_kwargs={"max_iter": 500})
    colours = channel_colors(features)
    legend = [(colours[i], f"direction {i}") for i in range(features)]
    red_obs = reduced_attr(nmf, get_attr(model, VALUE_HEAD, layer, obs[:256], integrate_steps=integrate_steps))
    if minatar:
        from ..envs import make_minatar
        from ..metrics.interpretability import object_correlations

        channel_names = list(make_minatar(env_id).unwrapped.channel_names)
        corr = np.asarray(object_correlations(nmf.acts_reduced, obs))   # [F, channels]
        legend = [(colours[i], f"{i}: {channel_names[int(corr[i].argmax())]} (r = {corr[i].max():.2f})")
                  for i in range(features)]
    # the direction to edit: the best match of the game's target object (MinAtar) or the most negative one
    # (CoinRun's obstacle kind, as in the paper); the next convolution's kernel loses that direction
    if minatar and env_id in EDIT_TARGET:
        target = EDIT_TARGET[env_id]
        ti = channel_names.index(target)
        k = int(corr[:, ti].argmax())
        why = {"target_object": target, "direction_corr_with_target": float(corr[k, ti])}
    else:
        k = int(np.argmin(red_obs.mean((0, 1, 2))))
        why = {"rule": "most negative mean value attribution (the paper's obstacle kind)"}

    values = np.ravel(get_acts(model, VALUE_HEAD, obs[:8]))
    obs_legend = None
    if minatar:  # which colour is which object
        obs_legend = list(zip(channel_colors(len(channel_names)), channel_names))
    labelled_grid([[observation_rgb(o, "chw") for o in obs[:8]]], out / "observations.png",
                  col_labels=[f"V = {float(v):.2f}" for v in values], legend=obs_legend,
                  title=f"{env_id}: observations and the agent's value estimates")
    fv = nmf.vis_traditional(steps=fv_steps)
    labelled_grid([[observation_rgb(f, "chw") for f in fv]], out / "feature_vis.png",
                  col_labels=[f"direction {i}" for i in range(features)],
                  title=f"Feature visualization of the NMF directions at {layer}")
    thumbs = [nmf.vis_dataset_thumbnail(i, num_mult=3 if minatar else 4, expand_mult=3 if minatar else 4)[0]
              for i in range(features)]
    labelled_grid([thumbs], out / "thumbnails.png", col_labels=[f"direction {i}" for i in range(features)],
                  title="Dataset examples of each direction (opacity = activation strength)", cell_inches=1.6)
    spatial = [nmf.vis_dataset(i, subdiv_mult=1, expand_mult=2 if minatar else 4)[0] for i in range(features)]
    half = (features + 1) // 2
    names = [f"direction {i}" for i in range(features)]
    labelled_grid([spatial[:half], spatial[half:]], out / "dataset_vis.png", cell_titles=[names[:half], names[half:]],
                  title="Spatially-aware dataset examples (one panel per direction)", cell_inches=2.2)

    col_labels = [f"t = {t}" for t in range(len(seg))]
    row_labels = ["observation", "positive\nattribution", "negative\nattribution"]
    smooth = 3 if minatar else 15
    rows, red, scale = attribution_rows(model, nmf, layer, seg, features=features, smooth=smooth,
                                        integrate_steps=integrate_steps)
    labelled_grid(rows, out / "attribution.png", row_labels=row_labels, col_labels=col_labels, legend=legend,
                  title=f"Value attribution at {layer} of a trajectory segment, one colour per NMF direction")
    edited = project_out_direction(model, layer, np.asarray(nmf.channel_dirs)[k], example_obs=obs[:2])
    rows_e, _, _ = attribution_rows(edited, nmf, layer, seg, features=features, smooth=smooth, scale=scale,
                                    integrate_steps=integrate_steps)
    labelled_grid(rows_e, out / "attribution_edited.png", row_labels=row_labels, col_labels=col_labels,
                  legend=legend, title=f"The same after projecting direction {k} out of the next layer's kernel "
                                       "(same colour scale)")
    res["figures"] = {
        "observations": "observations.png: eight observations with the agent's value estimates",
        "feature_vis": "feature_vis.png: gradient feature visualization of each direction",
        "thumbnails": "thumbnails.png: dataset examples of each direction (opacity = strength)",
        "dataset_vis": "dataset_vis.png: spatially-aware dataset examples of each direction",
        "attribution": "attribution.png: observations, positive and negative value attribution of a trajectory "
                       "segment (one colour per direction, disc-smoothed)",
        "attribution_edited": f"attribution_edited.png: the same for the agent with direction {k} edited out"}
    res["direction_colours"] = np.round(colours, 3).tolist()
    a0 = np.abs(red_obs).mean((0, 1, 2))
    a1 = np.abs(reduced_attr(nmf, get_attr(edited, VALUE_HEAD, layer, obs[:256],
                                           integrate_steps=integrate_steps))).mean((0, 1, 2))
    change = (a1 - a0) / np.maximum(a0, 1e-12)
    others = [i for i in range(features) if i != k]
    if minatar:
        roll = compare_rollouts({"original": model, "edited": edited}, env_id, n_episodes=episodes,
                                seed=seed + 100, max_steps=3000)
    else:  # CoinRun: success rate and episode length over the same levels
        from ..agents import evaluate
        from ..envs import make_coinrun

        n_envs = min(8, episodes)
        roll = {name: evaluate(m, make_coinrun(num_envs=n_envs, seed=1000), seed=1000,
                               num_episodes=max(n_envs, episodes - episodes % n_envs)).summary()
                for name, m in (("original", model), ("edited", edited))}
    res["edit"] = {"layer": layer, "next_layer": getattr(edited, "edit_info", {}).get("next_layer"),
                   "direction": k, **why, "attr_change_per_direction": np.round(change, 4).tolist(),
                   "max_abs_attr_change_other_directions": float(np.abs(change[others]).max()) if others else 0.0,
                   "rollouts": roll}
    res["seconds"] = round(time.time() - t0, 1)
    io.save_json(out / "results.json", json.loads(json.dumps(res, default=_jsonable)))
    return res


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _score_layers(model, obs: np.ndarray, features: int, seed: int, env_id: str) -> dict[str, Any]:
    """For every layer of :data:`MINATAR_LAYERS` and both NMF inputs (activations, value attributions): the best
    correlation of each direction's spatial map with an object channel, and how many objects reach 0.5."""
    from ..envs import make_minatar
    from ..metrics.interpretability import best_object_matches, count_matched_objects, object_correlations
    from ..vision import LayerNMF

    names = list(make_minatar(env_id).unwrapped.channel_names)
    scores: dict[str, Any] = {"channel_names": names, "layers": {}}
    best, best_key = None, None
    for layer in MINATAR_LAYERS:
        scores["layers"][layer] = {}
        for mode in ("activations", "value_attribution"):
            nmf = LayerNMF(model, layer, obs, features=features, seed=seed,
                           attr_layer_name=VALUE_HEAD if mode == "value_attribution" else None,
                           nmf_kwargs={"max_iter": 500})
            corr = object_correlations(nmf.acts_reduced, obs)
            entry = {"best": best_object_matches(corr, names),
                     "matched_objects_at_0.5": count_matched_objects(corr, 0.5, names)}
            scores["layers"][layer][mode] = entry
            key = (entry["matched_objects_at_0.5"]["count"], float(np.mean([b["corr"] for b in entry["best"]])))
            if best is None or key > best:
                best, best_key = key, (layer, mode)
    scores["most_interpretable"] = {"layer": best_key[0], "mode": best_key[1], "objects_matched": best[0],
                                    "mean_best_corr": round(best[1], 4)}
    return scores


def summary(res: dict[str, Any]) -> str:
    """One line for a terminal."""
    roll = res.get("edit", {}).get("rollouts", {})
    parts = [f"{res['env_id']}: {len(res['figures'])} figures"]
    if "object_scores" in res:
        m = res["object_scores"]["most_interpretable"]
        parts.append(f"most interpretable: {m['layer']} ({m['mode']}, {m['objects_matched']} objects >= 0.5)")
    if roll:
        parts.append("edit: " + json.dumps(roll, default=str)[:160])
    return "; ".join(parts)
