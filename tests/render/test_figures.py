"""Plotting leaves matplotlib's backend and pyplot alone, and writes files only when asked."""
import json
import subprocess
import sys

import matplotlib
import numpy as np
import pytest

from xrl.render import save_figure, save_png, show, subplots
from xrl.render.counterfactual import plot_counterfactual_grid, plot_training_log


@pytest.fixture()
def svg_backend():
    """A backend other than xrl's Agg canvases, as a notebook (inline) or desktop user has."""
    import matplotlib.pyplot as plt

    previous = matplotlib.get_backend()
    plt.switch_backend("svg")
    figures = plt.get_fignums()
    yield plt
    assert matplotlib.get_backend() == "svg", "a plotting function changed matplotlib's backend"
    assert plt.get_fignums() == figures, "a plotting function left a figure in pyplot"
    plt.switch_backend(previous)


def test_every_plotting_function_keeps_the_backend(svg_backend, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    assert show(rng.random((3, 3, 8, 8)), path=tmp_path / "a.png").is_file()
    assert show([np.zeros((4, 6, 6))], labels=["0.123"], path=tmp_path / "b.png").is_file()
    assert save_png(tmp_path / "c.png", rng.random((5, 5, 3))).is_file()
    fig, axes = subplots(1, 2)
    axes[0, 0].plot([0, 1])
    assert save_figure(fig, tmp_path / "d.svg").read_text().lstrip().startswith("<?xml")
    X = rng.random((3, 1, 8, 8)).astype(np.float32)
    plot_counterfactual_grid(X, X[::-1], [0, 1, 2], [1, 1, 0], [1, 0, 0], path=tmp_path / "e.png")
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps({"step": i, "reward": i / 10, "actor_loss": -i})
                                                  for i in range(8)))
    plot_training_log(tmp_path / "log.jsonl", tmp_path / "f.png")
    from xrl.worldmodel import DreamerAgent, MinAtarConfig, explain_latents, plot_latents
    from xrl.worldmodel.plot import plot_top_observations
    from xrl.envs import make_minatar

    agent = DreamerAgent(MinAtarConfig(obs_shape=(2, 10, 10), action_size=3, rssm_info={"deter_size": 8,
                         "category_size": 4, "class_size": 5}, embedding_size=8, rssm_node_size=8, node_size=8))
    ex = explain_latents(agent, make_minatar("freeway", pomdp=True, one_hot_actions=True), batch=1, seq_len=3,
                         rank=2, progress=False)
    assert len(plot_latents(ex, out_dir=tmp_path / "latents")) == 1
    plot_top_observations(ex, tmp_path / "top.png")
    assert {p.name for p in tmp_path.iterdir()} == {"a.png", "b.png", "c.png", "d.svg", "e.png", "log.jsonl",
                                                    "f.png", "latents", "top.png"}


def test_show_writes_nothing_unless_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="nothing was displayed or written; pass path="):
        assert show(np.zeros((2, 3, 4, 4))) is None
    assert list(tmp_path.iterdir()) == []                         # no ./outputs/show/ any more
    written = show(np.zeros((3, 4, 4)), out_dir=tmp_path / "shown")
    assert written.parent == tmp_path / "shown" and written.is_file()
    with pytest.raises(ValueError, match="labels: expected one label per image"):
        show(np.zeros((2, 3, 4, 4)), labels=["a"], path=tmp_path / "x.png")


def test_importing_xrl_does_not_import_pyplot():
    code = ("import sys, xrl, xrl.render, xrl.render.counterfactual, xrl.worldmodel, xrl.vision, xrl.agents; "
            "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
