"""The one rollout engine: every loop built on it returns, for a seed, exactly what the loop it replaced returned
(the replaced loops are kept verbatim in ``_legacy_rollouts.py`` as the reference), and its progress bar can be
turned off."""
import numpy as np
import pytest
import torch

from xrl.agents import ImpalaCNN, collect_trajectories, evaluate, load_bundled_agent, sample_observations
from xrl.envs import make_minatar, make_vec_minatar
from xrl.vision import compare_rollouts, freeway_collisions
from xrl.worldmodel import DreamerAgent, MinAtarConfig
from xrl.worldmodel import evaluate as wm_evaluate
from xrl.worldmodel import random_returns
from xrl.worldmodel.explain import rollout_latents

import _legacy_rollouts as legacy

TINY_WM = dict(obs_shape=(2, 10, 10), action_size=3, embedding_size=16, rssm_node_size=16,
               rssm_info={"deter_size": 12, "category_size": 4, "class_size": 5}, node_size=16, layers=2,
               conv_depth=4)


def impala(obs_shape, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ImpalaCNN(obs_shape, 3, channels=(4, 8, 8), fc_dim=16).eval()


def dreamer(seed=0, obs_shape=(2, 10, 10)):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DreamerAgent(MinAtarConfig(**dict(TINY_WM, obs_shape=obs_shape))).eval()


def one_hot_freeway():
    return make_minatar("freeway", pomdp=True, one_hot_actions=True)


def one_hot_breakout():
    return make_minatar("breakout", one_hot_actions=True)


@pytest.mark.parametrize("deterministic", [False, True])
def test_evaluate_is_unchanged(deterministic):
    agent = impala((4, 10, 10))
    new = evaluate(agent, make_vec_minatar("breakout", 3), num_episodes=6, seed=4, deterministic=deterministic,
                   progress=False)
    ref_returns, ref_lengths = legacy.agents_evaluate(agent, make_vec_minatar("breakout", 3), 6, 4, deterministic)
    np.testing.assert_array_equal(new.returns, ref_returns)
    np.testing.assert_array_equal(new.lengths, ref_lengths)
    rand = evaluate(None, make_vec_minatar("breakout", 2), num_episodes=4, seed=1)
    ref_returns, ref_lengths = legacy.agents_evaluate(None, make_vec_minatar("breakout", 2), 4, 1)
    np.testing.assert_array_equal(rand.returns, ref_returns)
    np.testing.assert_array_equal(rand.lengths, ref_lengths)


def test_collect_trajectories_and_sample_observations_are_unchanged():
    agent = impala((4, 10, 10))
    new = collect_trajectories(agent, "breakout", num_envs=3, num_steps=40, seed=2)
    ref = legacy.collect_trajectories(agent, make_vec_minatar("breakout", 3), 40, 2)
    for key, value in ref.items():
        np.testing.assert_array_equal(getattr(new, key), value, err_msg=key)
        assert getattr(new, key).dtype == value.dtype, key
    assert new.dones.any()  # episodes ended inside the window, so the autoreset path was exercised
    obs = sample_observations(agent, "breakout", num_obs=10, every=3, num_envs=4, seed=1)
    np.testing.assert_array_equal(obs, legacy.sample_observations(agent, make_vec_minatar("breakout", 4), 10, 3, 1))


@pytest.mark.parametrize("deterministic", [False, True])
def test_compare_rollouts_is_unchanged(deterministic):
    agent = impala((7, 10, 10), seed=1)
    res = compare_rollouts({"a": agent}, "freeway", n_episodes=2, seed=5, max_steps=60,
                           deterministic=deterministic)["a"]
    ret, length, events, done = legacy.compare_rollouts(agent, lambda: make_minatar("freeway"), 2, 5, 60,
                                                        freeway_collisions, deterministic)
    assert res["return_mean"] == float(ret.mean()) and res["length_mean"] == float(length.mean())
    assert res["events_mean"] == float(events.mean()) and res["finished"] == int(done.sum())
    assert res["return_sem"] == float(ret.std(ddof=1) / np.sqrt(2))
    if deterministic:
        return
    # the bundled Breakout agent's episodes end at different steps: slots stop one by one
    b = load_bundled_agent("breakout")
    res = compare_rollouts({"b": b}, "breakout", n_episodes=4, seed=0, max_steps=300, progress=False)["b"]
    ret, length, events, done = legacy.compare_rollouts(b, lambda: make_minatar("breakout"), 4, 0, 300,
                                                        lambda *a: int(bool(a[4])))
    assert 1 <= done.sum() < 4 and len(set(length)) > 1
    assert res["length_mean"] == float(length.mean()) and res["return_mean"] == float(ret.mean())
    assert res["events_mean"] == float(events.mean()) and res["finished"] == int(done.sum())


@pytest.mark.parametrize("greedy", [False, True])
def test_world_model_evaluation_is_unchanged(greedy):
    agent = dreamer(obs_shape=(4, 10, 10))  # Breakout: short episodes that end at different steps
    new = wm_evaluate(agent, one_hot_breakout, episodes=3, seed=7, greedy=greedy, parallel=2)
    assert new["returns"] == legacy.worldmodel_evaluate(agent, one_hot_breakout, 3, 7, greedy, parallel=2)
    env = make_minatar("breakout", one_hot_actions=True)
    assert random_returns(env, episodes=3, seed=2)["returns"] == legacy.random_returns(
        make_minatar("breakout", one_hot_actions=True), 3, 2)


def test_rollout_latents_are_unchanged():
    agent = dreamer(seed=3)
    new = rollout_latents(agent, one_hot_freeway, batch=2, seq_len=30, seed=1)
    ref = legacy.rollout_latents(agent, one_hot_freeway, 2, 30, 1)
    assert set(new) == set(ref)
    for key, value in ref.items():
        np.testing.assert_array_equal(new[key], value, err_msg=key)
        assert new[key].dtype == value.dtype, key
    # the restart path (episodes ending inside the window) is exercised with Breakout's short episodes
    b_agent = dreamer(obs_shape=(4, 10, 10))
    new = rollout_latents(b_agent, one_hot_breakout, batch=2, seq_len=80, seed=0)
    ref = legacy.rollout_latents(b_agent, one_hot_breakout, 2, 80, 0)
    for key, value in ref.items():
        np.testing.assert_array_equal(new[key], value, err_msg=key)


def test_engine_order_stopping_and_progress_bar(capsys):
    from xrl.envs import RandomPolicy, SingleEnvs, rollout

    seen = []

    def policy(obs, live, firsts):
        seen.append((live.copy(), firsts.copy()))
        return np.zeros(len(obs), dtype=np.int64), {}

    envs = SingleEnvs([make_minatar("breakout") for _ in range(2)])
    steps = list(rollout(envs, policy, seed=0, progress=False))
    # every slot plays one episode (the NOOP paddle misses the ball), then the loop stops by itself
    assert not envs.live.any() and steps[-1].dones.any()
    assert seen[0][1].all() and not seen[1][1].any()                # firsts only at the start
    assert all(s.live.sum() >= 1 for s in steps)
    assert capsys.readouterr().err == ""                             # progress=False: no bar
    restarting = SingleEnvs([make_minatar("breakout")], restart_seed=lambda k, count: 100 + count)
    firsts = [s.firsts[0] for s in rollout(restarting, RandomPolicy(3, 0), seed=0, steps=40, progress=True)]
    assert restarting.live.all() and sum(firsts) >= 2 and restarting.restarts[0] >= 1
    assert "40/40" in capsys.readouterr().err                        # the bar counted the steps
    with pytest.raises(ValueError, match="envs: expected at least one environment"):
        SingleEnvs([])
    with pytest.raises(ValueError, match="unit: expected one of 'step', 'episode'"):
        next(rollout(envs, policy, unit="frames"))


def test_bad_agents_and_envs_are_named():
    from torch import nn

    flat = nn.Sequential(nn.Flatten(), nn.Linear(400, 3))           # returns logits only, no value
    with pytest.raises(TypeError, match=r"agent: expected a module returning \(logits \[B, A\], value \[B\]\)"):
        collect_trajectories(flat, "breakout", num_envs=1, num_steps=2, progress=False)
    with pytest.raises(TypeError, match="env: expected a vectorised env.*make_vec_minatar\\(game, num_envs=1\\)"):
        evaluate(impala((4, 10, 10)), make_minatar("breakout"), num_episodes=2, progress=False)
    with pytest.raises(TypeError, match="agents: expected a non-empty dict name -> agent"):
        compare_rollouts(impala((7, 10, 10)), "freeway", n_episodes=1, max_steps=2, progress=False)
    # a float64 agent gets float64 observations
    double = impala((4, 10, 10)).double()
    traj = collect_trajectories(double, "breakout", num_envs=2, num_steps=3, seed=0, progress=False)
    assert traj.logits.dtype == np.float32 and np.isfinite(traj.values).all()
