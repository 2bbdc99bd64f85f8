"""The paper's buzzsaw edit on a CoinRun agent: NMF directions, the saw direction projected out, 1,000 paired levels.

"Understanding RL Vision" (Hilton et al., 2020) blinds its CoinRun agent to buzzsaws by projecting the NMF direction
of saws out of the next layer's kernel (deaths by buzzsaw 0.37% -> 12.76% over 10,000 levels). This script repeats
it with :func:`xrl.vision.edit_experiment.run_saw_edit_experiment`:

1. samples observations of the agent's own play and fits LayerNMF on value attributions (8 directions) at each
   survey layer; each direction's activation map is correlated with the saw / enemy / lava / coin pixels that
   :func:`xrl.envs.object_masks` finds in the same frames;
2. at ``--layer`` (default ``embedder.block2``, the paper's choice: the output of the second-to-last conv stage)
   projects the direction most correlated with saws out of the consuming conv (``embedder.block3.conv``);
3. plays the original and the edited agent on the same ``--levels`` levels and compares success rate, episode
   length and how episodes end (success, saw, enemy, lava, time limit; read from the final frames), with standard
   errors.

Outputs in ``--out``: ``results.json``; ``directions_<layer>.png`` (dataset examples of every direction with its
object correlations); ``saw_direction.png`` (the edited direction's dataset examples); ``episode_ends.png`` (the last
3 frames of ``--check`` failed episodes of the original agent, titled with the detector's verdict, to count by eye how
often it is right; the frames themselves in ``episode_ends.npz``); ``episode_ends_edited.png`` (the same for the
edited agent). ``--docs DIR`` copies the PNGs there (prefixed ``--prefix``).

    python examples/coinrun_saw_edit.py --agent coinrun --out outputs/coinrun_saw_edit --levels 1000
    python examples/coinrun_saw_edit.py --agent runs/agents/coinrun/checkpoint --out OUT --saw-threshold 0.1

Runs at 1 torch thread by default (``--threads``); inference uses a channels-last copy of each agent (checked against
the agent as given on the NMF observations).
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch


def load(agent: str):
    from xrl.agents import BUNDLED_AGENTS, load_agent, load_bundled_agent

    if agent.lower() in BUNDLED_AGENTS:
        return load_bundled_agent(agent), f"bundled:{agent.lower()}"
    return load_agent(agent), str(Path(agent).resolve())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="coinrun", help="bundled agent name or a folder with agent.json")
    ap.add_argument("--out", default="outputs/coinrun_saw_edit")
    ap.add_argument("--levels", type=int, default=1000, help="paired levels (episodes per agent)")
    ap.add_argument("--layer", default="embedder.block2", help="layer whose saw direction is edited out")
    ap.add_argument("--survey", default="embedder.block1,embedder.block3",
                    help="other layers to fit NMF on and report object correlations for ('' for none)")
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--num-obs", type=int, default=2048)
    ap.add_argument("--obs-every", type=int, default=16)
    ap.add_argument("--num-envs", type=int, default=50, help="parallel levels (inference batch)")
    ap.add_argument("--direction", type=int, default=None, help="override the direction to edit out")
    ap.add_argument("--saw-threshold", type=float, default=None,
                    help="also edit out, together, every direction whose saw correlation is at least this, and "
                         "compare that agent on the same levels ('edited_all')")
    ap.add_argument("--check", type=int, default=50, help="failed episodes in the detector contact sheet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--docs", default=None, help="copy the PNGs into this folder (e.g. docs/images)")
    ap.add_argument("--prefix", default="coinrun_saw_edit_", help="file-name prefix of the PNGs copied to --docs")
    ap.add_argument("--no-bar", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from xrl.agents import sample_observations
    from xrl.vision import LayerNMF
    from xrl.vision.edit_experiment import (OBJECTS, direction_object_correlations, paired_comparison, play_levels,
                                            plot_episode_ends, project_out_directions, save_direction_examples)
    from xrl.vision.editing import project_out_direction

    try:
        agent, agent_name = load(args.agent)
    except Exception as exc:   # no such agent / no procgen here
        print(f"coinrun_saw_edit: cannot load agent {args.agent!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(2)
    progress = not args.no_bar
    t0 = time.time()
    timings = {}
    res = {"agent": agent_name, "global_step": agent.metadata.get("global_step"), "levels": args.levels,
           "layer": args.layer, "features": args.features, "num_obs": args.num_obs, "obs_every": args.obs_every,
           "seed": args.seed, "threads": args.threads, "objects": list(OBJECTS)}

    obs = sample_observations(agent, "coinrun", num_obs=args.num_obs, every=args.obs_every, num_envs=64,
                              seed=args.seed, env_kwargs={"distribution_mode": "easy", "num_levels": 0})
    timings["observations"] = time.time() - t0

    layers = [args.layer] + [s for s in args.survey.split(",") if s and s != args.layer]
    survey, nmfs = {}, {}
    for layer in layers:
        t = time.time()
        nmf = LayerNMF(agent, layer, obs, features=args.features, attr_layer_name="fc_value", seed=args.seed)
        corr = direction_object_correlations(nmf, obs)
        nmfs[layer] = (nmf, corr)
        mean_attr = nmf.transform(np.maximum(nmf.attrs, 0), "hwc").mean((0, 1, 2)) - \
            nmf.transform(np.maximum(-nmf.attrs, 0), "hwc").mean((0, 1, 2))
        survey[layer] = {"correlations": np.round(corr, 4).tolist(),
                         "best_direction": {o: int(np.argmax(corr[:, j])) for j, o in enumerate(OBJECTS)},
                         "best_correlation": {o: round(float(corr[:, j].max()), 4) for j, o in enumerate(OBJECTS)},
                         "mean_value_attribution": np.round(mean_attr, 5).tolist(), "seconds": time.time() - t}
        labels = [f"{layer} #{k}\n" + " ".join(f"{o} {corr[k, j]:.2f}" for j, o in enumerate(OBJECTS))
                  for k in range(args.features)]
        save_direction_examples(nmf, out / f"directions_{layer.replace('.', '_')}.png", labels=labels)
        print(f"{layer}: best correlations {survey[layer]['best_correlation']}", flush=True)
    res["survey"] = survey
    timings["nmf"] = time.time() - t0 - timings["observations"]

    nmf, corr = nmfs[args.layer]
    k = int(np.argmax(corr[:, OBJECTS.index("saw")])) if args.direction is None else args.direction
    edited = project_out_direction(agent, args.layer, nmf.channel_dirs[k], example_obs=obs[:2])
    res["direction"] = k
    res["direction_correlations"] = {o: round(float(corr[k, j]), 4) for j, o in enumerate(OBJECTS)}
    res["edited_kernel"] = edited.edit_info["next_layer"]
    save_direction_examples(nmf, out / "saw_direction.png", [k], labels=[
        f"{args.layer} direction {k}\n" + ", ".join(f"{o} {corr[k, j]:.2f}" for j, o in enumerate(OBJECTS))],
        num_mult=6, expand_mult=4, zoom=4)

    agents = {"original": agent, "edited": edited}
    if args.saw_threshold is not None:
        many = [j for j in range(args.features) if corr[j, OBJECTS.index("saw")] >= args.saw_threshold]
        res["directions_all"] = many
        if many:
            agents["edited_all"] = project_out_directions(agent, args.layer, nmf.channel_dirs[many],
                                                          example_obs=obs[:2])

    # channels-last copies for the many rollouts, checked against the agents as given
    fast = {}
    for name, m in agents.items():
        f = copy.deepcopy(m).to(memory_format=torch.channels_last)
        with torch.inference_mode():
            x = torch.from_numpy(obs[:64])
            diff = float((f(x)[0] - m(x)[0]).abs().max())
        if diff > 1e-3:
            raise RuntimeError(f"channels-last copy of the {name} agent differs from it by {diff:.2e} in logits")
        res[f"channels_last_max_logit_diff_{name}"] = diff
        fast[name] = f
    t = time.time()
    outcomes = {name: play_levels(m, args.levels, seed=args.seed + 1, num_envs=args.num_envs, progress=progress)
                for name, m in fast.items()}
    timings["rollouts"] = time.time() - t
    res["comparison"] = paired_comparison(outcomes["original"], outcomes["edited"])
    if "edited_all" in outcomes:
        res["comparison_all"] = paired_comparison(outcomes["original"], outcomes["edited_all"])
    for name, o in outcomes.items():
        res[f"causes_{name}"] = {c: int((o.causes == c).sum()) for c in np.unique(o.causes)}
        failed = np.flatnonzero(~o.success & (o.causes != "timeout"))[:args.check]
        sheet = out / ("episode_ends.png" if name == "original" else f"episode_ends_{name}.png")
        plot_episode_ends(o.final_frames[failed], [f"{i}: {o.causes[e]} ({o.lengths[e]} steps)"
                                                   for i, e in enumerate(failed)], sheet)
        res[f"sheet_{name}"] = {"episodes": failed.tolist(), "level_seeds": o.level_seeds[failed].tolist(),
                                "verdicts": o.causes[failed].tolist()}
        np.savez_compressed(sheet.with_suffix(".npz"), final_frames=o.final_frames[failed],
                            verdicts=o.causes[failed].astype(str), lengths=o.lengths[failed],
                            level_seeds=o.level_seeds[failed])
    res["seconds"] = {**{k2: round(v, 1) for k2, v in timings.items()}, "total": round(time.time() - t0, 1)}
    (out / "results.json").write_text(json.dumps(res, indent=1))
    c = res["comparison"]
    print(json.dumps({"levels": args.levels, "direction": k, "saw_corr": res["direction_correlations"]["saw"],
                      **{m: c[m] for m in ("success_rate", "ends_by_saw", "ends_by_enemy", "ends_by_lava",
                                           "ends_by_timeout", "episode_length")}}))
    if "comparison_all" in res:
        print(json.dumps({"directions_all": res["directions_all"], **{m: res["comparison_all"][m] for m in (
            "success_rate", "ends_by_saw", "ends_by_timeout", "episode_length")}}))
    if args.docs:
        docs = Path(args.docs)
        docs.mkdir(parents=True, exist_ok=True)
        for png in ("saw_direction.png", f"directions_{args.layer.replace('.', '_')}.png", "episode_ends.png",
                    "episode_ends_edited.png"):
            shutil.copy(out / png, docs / f"{args.prefix}{png}")


if __name__ == "__main__":
    main()
