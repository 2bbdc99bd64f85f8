"""Seed 002 in a few lines: which observations drive the bundled world model's categorical latents.

    python examples/worldmodel_freeway.py    # ~30 s on 2 CPU cores; writes PNGs to outputs/worldmodel

The full job is `xrl worldmodel explain`; training a world model is `xrl worldmodel train`.
"""
from xrl.envs import make_minatar
from xrl.pretrained import load_pretrained
from xrl.worldmodel.explain import explain_latents, relate_components
from xrl.worldmodel.plot import plot_latents

agent = load_pretrained("freeway_pomdp")                         # DreamerV2-style agent (RSSM, actor, critic)
env = make_minatar("freeway", pomdp=True, one_hot_actions=True)  # chicken + car channels only
ex = explain_latents(agent, env, batch=4, seq_len=30, rank=10, seed=212)
print("activity per (rollout, step, categorical):", ex.activity.shape)
print("best ground-truth match per NMF component:", [b[0]["feature"] for b in relate_components(ex).to_dict()["best"]])
plot_latents(ex, rollout=0, rows_per_page=10, out_dir="outputs/worldmodel")
