"""xrl.distributed.collect_trajectories / evaluate equal the serial functions for a seed, whatever the workers."""
from __future__ import annotations

import functools
import sys
import threading

import numpy as np
import pytest
import torch

from xrl.agents import collect_trajectories, evaluate
from xrl.envs import make_vec_minatar
from xrl.models import ImpalaCNN

ray = pytest.importorskip("ray")
import xrl.distributed as xd  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = pytest.mark.xdist_group("ray")

DISCRETE = ("obs", "actions", "rewards", "firsts", "dones", "objects")


def tiny_agent(seed=0):
    """An untrained small IMPALA CNN for Breakout (4 channels, 3 actions): short episodes, fast forward passes."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ImpalaCNN((4, 10, 10), 3, channels=(4, 8, 8), fc_dim=32).eval()


def make_breakout(num_envs, seed):
    return make_vec_minatar("breakout", num_envs=num_envs, seed=seed)


def assert_same_trajectories(serial, dist, exact_floats):
    for key in DISCRETE:
        np.testing.assert_array_equal(getattr(dist, key), getattr(serial, key), err_msg=key)
    for key in ("logits", "values"):
        if exact_floats:
            np.testing.assert_array_equal(getattr(dist, key), getattr(serial, key), err_msg=key)
        else:  # each worker runs the agent on its share: CPU kernels may round differently per batch size
            np.testing.assert_allclose(getattr(dist, key), getattr(serial, key), rtol=1e-5, atol=1e-5, err_msg=key)
    assert dist.meta == serial.meta


def test_trajectories_equal_the_serial_function(ray_cluster):
    agent = tiny_agent()
    serial = collect_trajectories(agent, "breakout", num_envs=4, num_steps=40, seed=3, progress=False)
    assert serial.firsts[:, 1:].any()  # episodes end and restart inside the window: autoreset is covered
    one = xd.collect_trajectories(agent, "breakout", num_workers=1, num_envs=4, num_steps=40, seed=3, progress=False)
    assert_same_trajectories(serial, one, exact_floats=True)
    two = xd.collect_trajectories(agent, "breakout", num_workers=2, num_envs=4, num_steps=40, seed=3, progress=False)
    assert_same_trajectories(serial, two, exact_floats=False)


def test_deterministic_trajectories_from_an_agent_factory_and_an_env_factory(ray_cluster):
    serial = collect_trajectories(tiny_agent(1), make_breakout(3, 0), num_envs=3, num_steps=30, seed=5,
                                  deterministic=True, progress=False)
    dist = xd.collect_trajectories(functools.partial(tiny_agent, 1), make_breakout, num_workers=2, num_envs=3,
                                   num_steps=30, seed=5, deterministic=True, progress=False)  # shares of 2 and 1
    for key in DISCRETE:
        np.testing.assert_array_equal(getattr(dist, key), getattr(serial, key), err_msg=key)
    np.testing.assert_allclose(dist.logits, serial.logits, rtol=1e-5, atol=1e-5)


def test_evaluation_equals_the_serial_function(ray_cluster):
    venv = make_vec_minatar("breakout", num_envs=4)
    for agent in (None, tiny_agent()):
        serial = evaluate(agent, venv, num_episodes=8, seed=1, progress=False)
        dist = xd.evaluate(agent, "breakout", num_workers=2, num_envs=4, num_episodes=8, seed=1, progress=False)
        np.testing.assert_array_equal(dist.returns, serial.returns)  # same episodes, same (step, env) order
        np.testing.assert_array_equal(dist.lengths, serial.lengths)
        assert dist.level_complete is None and len(set(serial.lengths.tolist())) > 1


def failing_env(num_envs, seed):
    if seed >= 12:  # the second share of seed=10, num_envs=4
        raise RuntimeError("level generator offline")
    return make_breakout(num_envs, seed)


def test_a_failing_worker_names_its_share_and_returns_nothing(ray_cluster):
    with pytest.raises(xd.WorkerError, match=r"chunk 1 of 2 \(environments 2:4\).*building environments 2:4 "
                                             r"raised RuntimeError: level generator offline") as info:
        xd.evaluate(None, failing_env, num_workers=2, num_envs=4, num_episodes=4, seed=10, progress=False)
    assert info.value.chunk == 1 and isinstance(info.value.cause, RuntimeError)


def test_bad_arguments_fail_before_any_worker_starts():
    agent = tiny_agent()
    with pytest.raises(ValueError, match="procgen draws the levels"):
        xd.collect_trajectories(agent, "coinrun", num_workers=2, num_envs=4)
    with pytest.raises(ValueError, match="game"):
        xd.collect_trajectories(agent, "brekout", num_workers=2, num_envs=4)
    with pytest.raises(TypeError, match="an env object cannot be split"):
        xd.collect_trajectories(agent, make_breakout(2, 0), num_workers=2, num_envs=2)
    with pytest.raises(ValueError, match="num_workers: expected at most 4"):
        xd.collect_trajectories(agent, "breakout", num_workers=5, num_envs=4)
    with pytest.raises(ValueError, match="num_episodes: expected a multiple of num_envs=4"):
        xd.evaluate(agent, "breakout", num_workers=2, num_envs=4, num_episodes=6)
    lock = threading.Lock()
    with pytest.raises(TypeError, match="agent: expected an object Ray can serialize"):
        xd.evaluate(lambda: lock, "breakout", num_workers=2, num_envs=4, num_episodes=4)
    with pytest.raises(TypeError, match="agent: expected a torch module"):
        xd.evaluate("freeway-agent", "breakout", num_workers=2, num_envs=4, num_episodes=4)
