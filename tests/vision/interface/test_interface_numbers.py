"""The page's numbers are the library's: values, advantages, action probabilities and attribution totals recomputed
with get_acts / get_attr / LayerNMF / compute_gae for sampled frames equal what the page embeds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xrl.agents import collect_trajectories, compute_gae, load_bundled_agent
from xrl.vision import LayerNMF, get_acts, get_attr
from xrl.vision.interface import InterfaceConfig, Observations, decode_maps, resolve_agent, run_work_item


FRAMES = [(0, 0), (0, 17), (1, 30), (1, 47)]           # (trajectory, frame) samples


@pytest.fixture(scope="module")
def agent():
    return load_bundled_agent("breakout")


@pytest.fixture(scope="module")
def rollouts(agent, tiny):
    # the page's rollouts: trajectories environments, steps + 1 steps (the last value bootstraps GAE), seed
    return collect_trajectories(agent, "breakout", num_envs=tiny["trajectories"], num_steps=tiny["steps"] + 1,
                                seed=tiny["seed"])


def test_values_probabilities_and_advantages(tiny_data, agent, rollouts, tiny):
    gamma = agent.metadata["ppo_config"]["gamma"]
    lam = agent.metadata["ppo_config"]["gae_lambda"]
    assert tiny_data["settings"]["gamma"] == gamma and tiny_data["settings"]["gae_lambda"] == lam
    T = tiny["steps"]
    for n, t in FRAMES:
        page = tiny_data["trajectories"][n]
        obs = rollouts.obs[n, t:t + 1]
        value = get_acts(agent, "fc_value", obs)[0]
        logits = get_acts(agent, "fc_policy", obs)[0]
        probs = torch.softmax(torch.from_numpy(logits).double(), -1).numpy()
        assert page["values"][t] == pytest.approx(float(value), rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(page["probs"][t], probs, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(page["logits"][t], logits, rtol=1e-5, atol=1e-6)
        assert page["actions"][t] == int(rollouts.actions[n, t])
    # GAE over the page's own rewards / dones with values from get_acts, bootstrapped by the extra step
    for n in range(tiny["trajectories"]):
        page = tiny_data["trajectories"][n]
        values = get_acts(agent, "fc_value", rollouts.obs[n])              # [T + 1]
        adv, _ = compute_gae(np.asarray(page["rewards"], np.float32), values[:T].astype(np.float32),
                             np.asarray(page["dones"], np.float32), next_value=values[T], gamma=gamma,
                             gae_lambda=lam)
        np.testing.assert_allclose(page["advantages"], adv, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layer", ["embedder.block1", "embedder.block2"])
def test_attribution_totals_equal_layer_nmf(tiny_data, agent, rollouts, layer, tiny):
    source = resolve_agent("breakout")
    config = InterfaceConfig(source=source, layers=tuple(tiny["layers"]), trajectories=tiny["trajectories"],
                             steps=tiny["steps"], observations=tiny["observations"], obs_every=tiny["obs_every"],
                             features=tiny["features"], integrate_steps=tiny["integrate_steps"], seed=tiny["seed"])
    observations = run_work_item(Observations(), config, {}, model=agent, progress=False)["obs"]
    nmf = LayerNMF(agent, layer, observations, features=tiny["features"], attr_layer_name="fc_value",
                   attr_opts={"integrate_steps": tiny["integrate_steps"]}, seed=tiny["seed"])
    norms = nmf.channel_dirs.sum(-1)
    items = tiny_data["attribution"]["items"][layer]
    for n, t in FRAMES:
        obs = rollouts.obs[n, t:t + 1]
        action = int(rollouts.actions[n, t])
        for kind, attr in (
                ("value", get_attr(agent, "fc_value", layer, obs, integrate_steps=tiny["integrate_steps"])),
                ("action", get_attr(agent, "fc_policy", layer, obs, integrate_steps=tiny["integrate_steps"],
                                    score_fn=lambda logits: logits[:, action]))):
            reduced = nmf.transform(np.maximum(attr, 0)) - nmf.transform(np.maximum(-attr, 0))   # [1, h, w, F]
            totals = (reduced * norms).sum((1, 2))[0]                                           # [F]
            entry = items[n][kind]
            np.testing.assert_allclose(entry["totals"][t], totals, rtol=1e-4, atol=1e-5)
            assert entry["total"][t] == pytest.approx(float(attr.sum()), rel=1e-4, abs=1e-5)
            # features + residual = the whole attribution
            assert sum(entry["totals"][t]) + entry["residual"][t] == pytest.approx(entry["total"][t], abs=1e-4)


def test_embedded_maps_decode_to_the_totals(tiny_data, tiny):
    """The int8 maps the page draws sum (over positions) to the exact totals, within the quantisation step."""
    rng = tiny_data["attribution"]["range"]
    for layer in tiny["layers"]:
        for n in range(tiny["trajectories"]):
            for kind in ("value", "action"):
                entry = tiny_data["attribution"]["items"][layer][n][kind]
                maps = decode_maps(tiny_data, layer, n, kind)                     # [T, h, w, F + 1]
                T, h, w, K = maps.shape
                step = rng * entry["scale"] / 127
                sums = maps.sum((1, 2))
                # positions below the clip range are exact to half a step; clipped ones only under-count
                tol = 0.5 * step * h * w + 1e-6
                clipped = np.abs(maps) >= rng * entry["scale"] * (1 - 1e-6)
                ok = ~clipped.any((1, 2))                                          # [T, K]
                np.testing.assert_array_less(np.abs(sums[:, :-1] - np.asarray(entry["totals"]))[ok[:, :-1]], tol)
                np.testing.assert_array_less(np.abs(sums[:, -1] - np.asarray(entry["residual"]))[ok[:, -1]], tol)
                assert ok.mean() > 0.9
