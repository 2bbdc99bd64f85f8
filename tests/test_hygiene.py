"""Importing xrl and calling any of its plotting functions leaves matplotlib's backend as the user set it.

Runs in a fresh interpreter whose backend is 'svg' (not the 'Agg' that plotting code might switch to), so that a
switch is visible; a notebook user's inline backend would be lost the same way.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, sys
import matplotlib
matplotlib.use("svg")
import numpy as np
out = sys.argv[1]
seen = {}

def check(name):
    seen[name] = matplotlib.get_backend()
    if seen[name] != "svg":     # judge every call on its own
        matplotlib.use("svg")

import xrl, xrl.agents, xrl.counterfactual, xrl.envs, xrl.jobs, xrl.metrics, xrl.models, xrl.pretrained
import xrl.render, xrl.report, xrl.vision, xrl.worldmodel, xrl.cli
check("import")
from xrl.render import labelled_grid, plot_explanation, show
from xrl.render.counterfactual import plot_counterfactual_grid, plot_training_log
X = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
plot_counterfactual_grid(X, X, [0, 1, 2], [1, 1, 1], [1, 1, 1], out + "/grid.png"); check("plot_counterfactual_grid")
with open(out + "/log.jsonl", "w") as f:
    f.write("\n".join(json.dumps({"step": s, "reward": 0.1 * s, "actor_loss": 1.0}) for s in range(6)))
plot_training_log(out + "/log.jsonl", out + "/log.png"); check("plot_training_log")
show(X, path=out + "/show.png"); check("show")
show(X, labels=["a", "b", "c"], path=out + "/show_labels.png"); check("show(labels=)")
labelled_grid([[X[0], X[1]]], out + "/lg.png", col_labels=["a", "b"]); check("labelled_grid")
plot_explanation({"orig": {"X": X, "class": np.zeros((3, 1))}, "cf": {"X": X, "class": np.ones((3, 1))}},
                 n=2, path=out + "/ex.png"); check("plot_explanation")
from xrl.envs import make_minatar
from xrl.pretrained import load_pretrained
from xrl.worldmodel.explain import explain_latents
from xrl.worldmodel.plot import plot_latents, plot_top_observations
ex = explain_latents(load_pretrained("freeway_pomdp"), make_minatar("freeway", pomdp=True, one_hot_actions=True),
                     batch=1, seq_len=3, rank=2, seed=0)
plot_latents(ex, rollout=0, rows_per_page=3, out_dir=out); check("plot_latents")
plot_top_observations(ex, out + "/top.png"); check("plot_top_observations")
print(json.dumps(seen))
"""


def test_import_and_plotting_leave_the_backend_alone(tmp_path):
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    changed = {name: backend for name, backend in seen.items() if backend != "svg"}
    assert not changed, f"these calls changed matplotlib's backend from 'svg': {changed}"
