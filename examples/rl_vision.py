"""Seed 003 in a few lines: what the bundled Breakout agent looks at, and an edit that blinds it to one direction.

    python examples/rl_vision.py             # ~1 minute on 2 CPU cores; writes PNGs under outputs/show

The walk-through figures are `xrl vision walkthrough`; the interactive page is `xrl vision interface`.
"""
import numpy as np

from xrl.agents import sample_observations
from xrl.pretrained import load_pretrained
from xrl.vision import LayerNMF, compare_rollouts, get_attr, project_out_direction, show, zoom_to

model = load_pretrained("breakout")                              # IMPALA CNN: model(obs) -> (logits, value)
obs = sample_observations(model, env="breakout", num_obs=512, every=16, seed=0)   # [N, 4, 10, 10]
nmf = LayerNMF(model, "embedder.block1", obs, features=8, attr_layer_name="fc_value", seed=0)
show([zoom_to(nmf.vis_dataset_thumbnail(i, num_mult=3, expand_mult=3)[0], 120).transpose(1, 2, 0)
      for i in range(8)])                                         # dataset examples of each direction
attr = get_attr(model, "fc_value", "embedder.block1", obs[:8], integrate_steps=10)          # [8, C, 5, 5]
attr_reduced = nmf.transform(np.maximum(attr, 0)) - nmf.transform(np.maximum(-attr, 0))    # [8, 5, 5, 8]
print("mean value attribution per direction:", attr_reduced.mean((0, 1, 2)).round(3))
edited = project_out_direction(model, "embedder.block1", nmf.channel_dirs[0], example_obs=obs[:2])
print(compare_rollouts({"original": model, "edited": edited}, "breakout", n_episodes=10))
