"""collect_trajectories: the .npz schema round trip, firsts/dones, object channels, sampled observations."""
import numpy as np
import pytest
import torch

from xrl.agents import ImpalaCNN, Trajectories, collect_trajectories, sample_observations
from xrl.envs import make_vec_minatar


def tiny_agent(obs_shape, n_actions=3):
    torch.manual_seed(0)
    return ImpalaCNN(obs_shape, n_actions, channels=(4, 8, 8), fc_dim=16).eval()


def test_schema_round_trip(tmp_path):
    agent = tiny_agent((4, 10, 10))
    traj = collect_trajectories(agent, "breakout", num_envs=3, num_steps=60, seed=1)
    N, T = 3, 60
    assert traj.obs.shape == (N, T, 4, 10, 10) and traj.obs.dtype == np.float32
    assert traj.actions.shape == (N, T) and traj.actions.dtype == np.int64
    assert traj.rewards.dtype == np.float32 and traj.values.dtype == np.float32
    assert traj.logits.shape == (N, T, 3) and traj.objects.shape == (N, T, 4, 10, 10)
    assert traj.firsts[:, 0].all() and (traj.firsts[:, 1:] == traj.dones[:, :-1]).all()
    assert traj.dones.any(), "breakout with a random-ish policy ends episodes within 60 steps"
    assert traj.meta["action_names"] == ["NOOP", "LEFT", "RIGHT"] and traj.meta["env_id"] == "breakout"
    # values/logits are the agent's on the stored observations
    with torch.no_grad():
        logits, values = agent(torch.from_numpy(traj.obs[1, :5]))
    np.testing.assert_allclose(traj.values[1, :5], values.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(traj.logits[1, :5], logits.numpy(), rtol=1e-5, atol=1e-6)
    path = traj.save(tmp_path / "traj.npz")
    back = Trajectories.load(path)
    for key in ("obs", "actions", "rewards", "firsts", "dones", "values", "logits", "objects"):
        np.testing.assert_array_equal(getattr(back, key), getattr(traj, key))
        assert getattr(back, key).dtype == getattr(traj, key).dtype
    assert back.meta == traj.meta
    flat = back.flatten()
    assert flat["obs"].shape == (N * T, 4, 10, 10) and flat["actions"].shape == (N * T,)
    np.testing.assert_array_equal(flat["obs"][T:2 * T], traj.obs[1])
    eps = back.episodes()
    assert eps and all(ep["firsts"][0] and ep["dones"][-1] and not ep["dones"][:-1].any() for ep in eps)


def test_same_seed_same_trajectories_and_pomdp_objects():
    agent = tiny_agent((2, 10, 10))
    a = collect_trajectories(agent, "freeway", num_envs=2, num_steps=20, seed=5, env_kwargs={"pomdp": True})
    b = collect_trajectories(agent, make_vec_minatar("freeway", 2, pomdp=True), num_envs=2, num_steps=20, seed=5)
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert a.obs.shape == (2, 20, 2, 10, 10) and a.objects.shape == (2, 20, 7, 10, 10)
    np.testing.assert_array_equal(a.obs, a.objects[:, :, :2].astype(np.float32))
    assert a.meta["channel_names"] == ["chicken", "car"] and len(a.meta["object_names"]) == 7


def test_sample_observations_every_k_steps():
    agent = tiny_agent((4, 10, 10))
    obs = sample_observations(agent, "breakout", num_obs=10, every=3, num_envs=4, seed=0)
    assert obs.shape == (10, 4, 10, 10) and obs.dtype == np.float32


def test_errors(tmp_path):
    agent = tiny_agent((4, 10, 10))
    with pytest.raises(ValueError, match="num_envs: expected the vectorised env's num_envs=2"):
        collect_trajectories(agent, make_vec_minatar("breakout", 2), num_envs=3, num_steps=4, seed=0)
    with pytest.raises(ValueError, match="did you mean 'breakout'"):
        collect_trajectories(agent, "brekout", num_envs=1, num_steps=4, seed=0)
    with pytest.raises(ValueError, match=r"expected a batch of shape \[B, 4, 10, 10\]"):
        collect_trajectories(agent, "freeway", num_envs=1, num_steps=4, seed=0)
    (tmp_path / "x.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        Trajectories.load(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", obs=np.zeros(3))
    with pytest.raises(ValueError, match="missing keys"):
        Trajectories.load(tmp_path / "y.npz")
    good = collect_trajectories(agent, "breakout", num_envs=2, num_steps=4, seed=0, progress=False)
    arrays = {k: getattr(good, k) for k in ("obs", "actions", "rewards", "firsts", "dones", "values", "logits")}
    with pytest.raises(ValueError, match=r"rewards: expected an array \[N, T\] with N=2, T=4 \(as actions\)"):
        Trajectories(**{**arrays, "rewards": good.rewards[:, :3]})
    with pytest.raises(ValueError, match=r"obs: expected an array \[N, T, C, H, W\]"):
        Trajectories(**{**arrays, "obs": good.obs[:, :, 0]})
    np.savez(tmp_path / "z.npz", **{**arrays, "values": good.values[:1], "meta": np.array("{}")})
    with pytest.raises(ValueError, match="values: expected an array"):   # a misaligned file is refused at load
        Trajectories.load(tmp_path / "z.npz")


def test_an_interrupted_save_leaves_exactly_the_old_file(tmp_path, monkeypatch):
    from xrl.agents import trajectories as module

    agent = tiny_agent((4, 10, 10))
    old = collect_trajectories(agent, "breakout", num_envs=2, num_steps=8, seed=0, progress=False)
    new = collect_trajectories(agent, "breakout", num_envs=2, num_steps=8, seed=1, progress=False)
    path = old.save(tmp_path / "traj")
    assert path.name == "traj.npz"
    real = np.savez_compressed

    def cut(file, **arrays):  # the writer dies half-way through the archive
        real(file, **{k: arrays[k] for k in list(arrays)[:3]})
        raise KeyboardInterrupt

    monkeypatch.setattr(module.np, "savez_compressed", cut)
    with pytest.raises(KeyboardInterrupt):
        new.save(path)
    monkeypatch.setattr(module.np, "savez_compressed", real)
    back = Trajectories.load(path)
    np.testing.assert_array_equal(back.actions, old.actions)
    np.testing.assert_array_equal(back.obs, old.obs)
    assert back.meta == old.meta and sorted(p.name for p in tmp_path.iterdir()) == ["traj.npz"]
    new.save(path)
    np.testing.assert_array_equal(Trajectories.load(path).obs, new.obs)
