"""PPO learns a tiny task on a tiny budget, logs, checkpoints, resumes, and is deterministic for a seed."""
import csv

import numpy as np
import pytest
import torch
from gymnasium import spaces

from xrl import io
from xrl.agents import ImpalaCNN, PPOConfig, load_agent, train_ppo
from xrl.agents.ppo import RewardNormalizer


class LitCellEnv:
    """Contextual bandit with the xrl vector-env interface: one lit column on a 1 x 10 x 10 grid; action 0 pays 1
    when the column is in the left half, action 1 when it is in the right half (random play: 0.5 per episode)."""

    def __init__(self, num_envs=8, seed=0):
        self.num_envs = num_envs
        self.single_observation_space = spaces.Box(0.0, 1.0, (1, 10, 10), np.float32)
        self.single_action_space = spaces.Discrete(2)
        self.action_names = ["LEFT", "RIGHT"]
        self.rng = np.random.default_rng(seed)

    def _draw(self):
        self.cols = self.rng.integers(10, size=self.num_envs)
        obs = np.zeros((self.num_envs, 1, 10, 10), np.float32)
        obs[np.arange(self.num_envs), 0, :, self.cols] = 1  # the whole column is lit
        return obs

    def reset(self, seed=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        return self._draw(), {}

    def step(self, actions):
        rewards = (np.asarray(actions) == (self.cols >= 5)).astype(np.float32)
        done = np.ones(self.num_envs, bool)
        info = {"episode_return": rewards.astype(np.float64), "episode_length": np.ones(self.num_envs, int)}
        return self._draw(), rewards, done, np.zeros_like(done), info

    def close(self):
        pass


def tiny_config(**kw):
    base = dict(env_id="litcell", total_timesteps=2048, num_envs=8, num_steps=64, num_minibatches=8,
                update_epochs=4, learning_rate=2e-3, channels=(4, 8, 8), fc_dim=32, seed=0, progress_bar=False,
                tensorboard=False, checkpoint_every=2)
    base.update(kw)
    return PPOConfig(**base)


def greedy_accuracy(agent, n=2000):
    env = LitCellEnv(n, seed=123)
    obs, _ = env.reset()
    with torch.no_grad():
        logits, _ = agent(torch.from_numpy(obs))
    return float((logits.argmax(-1).numpy() == (env.cols >= 5)).mean())


def test_ppo_improves_return_on_a_tiny_budget(tmp_path):
    torch.set_num_threads(1)
    result = train_ppo(tiny_config(), tmp_path / "run", env=LitCellEnv(8))
    first, last = result.history[0]["charts/episodic_return"], result.history[-1]["charts/episodic_return"]
    assert 0.35 < first < 0.65, first            # random play at the start
    assert last > 0.8, (first, last)              # 4 updates of 512 steps are enough to learn the rule
    assert greedy_accuracy(result.agent) > 0.9
    # logs and checkpoint
    rows = list(csv.DictReader(open(tmp_path / "run" / "progress.csv")))
    assert len(rows) == 4 and {"charts/episodic_return", "losses/value_loss", "charts/SPS"} <= set(rows[0])
    assert int(rows[-1]["global_step"]) == 2048 == result.global_step
    ckpt = tmp_path / "run" / "checkpoint"
    assert {p.name for p in ckpt.iterdir()} >= {"agent.safetensors", "agent.json", "optimizer.safetensors",
                                                 "optimizer.json", "state.json"}
    loaded = load_agent(tmp_path / "run")
    x = torch.rand(3, 1, 10, 10)
    torch.testing.assert_close(loaded(x), result.agent(x))


def test_same_seed_same_training_and_resume_continues(tmp_path):
    torch.set_num_threads(1)
    small = dict(num_envs=4, num_steps=32, num_minibatches=2, update_epochs=1)
    a = train_ppo(tiny_config(total_timesteps=256, **small), env=LitCellEnv(4))
    b = train_ppo(tiny_config(total_timesteps=256, **small), env=LitCellEnv(4))
    x = torch.rand(4, 1, 10, 10)
    torch.testing.assert_close(a.agent(x), b.agent(x), rtol=0, atol=0)
    # stop after 2 updates, then ask for 4: the second call resumes at step 256 and runs only 2 more updates
    train_ppo(tiny_config(total_timesteps=256, **small), tmp_path, env=LitCellEnv(4))
    resumed = train_ppo(tiny_config(total_timesteps=512, **small), tmp_path, env=LitCellEnv(4))
    assert [r["global_step"] for r in resumed.history] == [384, 512]
    assert len(list(csv.DictReader(open(tmp_path / "progress.csv")))) == 4
    # a checkpoint from another env is refused
    with pytest.raises(ValueError, match="checkpoint is for observations"):
        train_ppo(tiny_config(env_id="breakout", total_timesteps=4096, num_envs=2, num_steps=8, num_minibatches=2),
                  tmp_path)


def test_minibatch_chunks_accumulate_to_the_same_update():
    torch.set_num_threads(1)
    small = dict(total_timesteps=256, num_envs=4, num_steps=32, num_minibatches=2, update_epochs=2)  # mb of 64
    whole = train_ppo(tiny_config(**small), env=LitCellEnv(4))
    chunked = train_ppo(tiny_config(minibatch_chunk=24, **small), env=LitCellEnv(4))   # 24 + 24 + 16
    for (name, a), b in zip(whole.agent.state_dict().items(), chunked.agent.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    for key in ("losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac"):
        assert whole.history[-1][key] == pytest.approx(chunked.history[-1][key], rel=1e-3, abs=1e-6), key
    with pytest.raises(ValueError, match="minibatch_chunk"):
        tiny_config(minibatch_chunk=-1).validate()


def test_snapshots_keep_the_agent_at_intervals_of_frames(tmp_path):
    small = dict(num_envs=4, num_steps=32, num_minibatches=2, update_epochs=1)    # 128 frames per update
    res = train_ppo(tiny_config(total_timesteps=640, snapshot_every=256, **small), tmp_path, env=LitCellEnv(4))
    snaps = sorted((tmp_path / "snapshots").iterdir())
    assert [int(p.name) for p in snaps] == [256, 512]
    x = torch.rand(4, 1, 10, 10)
    first, last = load_agent(snaps[0]), load_agent(snaps[-1])
    assert first.metadata["global_step"] == 256 and last.metadata["global_step"] == 512
    assert not torch.equal(first(x)[1], last(x)[1])                    # weights of different steps
    assert not torch.equal(last(x)[1], res.agent(x)[1])                # the final agent (640) is later still
    with pytest.raises(ValueError, match="snapshot_every"):
        tiny_config(snapshot_every=-1).validate()


def test_reward_normalizer_divides_by_the_std_of_discounted_returns():
    rng = np.random.default_rng(0)
    norm, gamma = RewardNormalizer(3, gamma=0.9), 0.9
    rewards, dones = rng.normal(2.0, 3.0, (200, 3)), rng.random((200, 3)) < 0.05
    ret, seen, out = np.zeros(3), [], []
    for r, d in zip(rewards, dones):
        out.append(norm(r, d))
        ret = ret * gamma + r
        seen.append(ret.copy())
        ret[d] = 0.0
    var = np.var(np.concatenate(seen))                       # every env's discounted return at every step
    assert norm.var == pytest.approx(var, rel=1e-3) and norm.mean == pytest.approx(np.mean(seen), rel=1e-3)
    np.testing.assert_allclose(out[-1], rewards[-1] / np.sqrt(norm.var + 1e-8), rtol=1e-5)
    assert out[-1].dtype == np.float32
    assert np.abs(RewardNormalizer(1, 0.9)(np.array([1e6]), np.array([True]))).max() == 10.0   # clipped
    copy = RewardNormalizer(3, gamma)
    copy.load_state_dict(norm.state_dict())
    assert copy.state_dict() == norm.state_dict()


def test_norm_reward_statistics_and_the_init_agents_frames_travel_with_the_checkpoint(tmp_path):
    torch.set_num_threads(1)
    small = dict(num_envs=4, num_steps=32, num_minibatches=2, update_epochs=1, norm_reward=True)
    init = ImpalaCNN((1, 10, 10), 2, channels=(4, 8, 8), fc_dim=32)
    init.metadata = {"global_step": 1000}
    train_ppo(tiny_config(total_timesteps=256, **small), tmp_path, env=LitCellEnv(4), init_agent=init)
    state = io.load_json(tmp_path / "checkpoint" / "state.json")
    assert state["init_frames"] == 1000 and state["reward_normalizer"]["count"] == pytest.approx(256, abs=1e-3)
    assert 0.1 < state["reward_normalizer"]["var"] < 0.4            # Bernoulli(~0.5) rewards, one-step episodes
    assert load_agent(tmp_path).metadata["frames"] == 1256
    resumed = train_ppo(tiny_config(total_timesteps=512, **small), tmp_path, env=LitCellEnv(4))
    assert resumed.global_step == 512 and load_agent(tmp_path).metadata["frames"] == 1512
    state = io.load_json(tmp_path / "checkpoint" / "state.json")
    assert state["reward_normalizer"]["count"] == pytest.approx(512, abs=1e-3)   # continued, not restarted


def test_callback_returning_false_stops_with_a_resumable_checkpoint(tmp_path):
    torch.set_num_threads(1)
    small = dict(num_envs=4, num_steps=32, num_minibatches=2, update_epochs=1, checkpoint_every=10)
    seen = []
    stopped = train_ppo(tiny_config(total_timesteps=512, **small), tmp_path, env=LitCellEnv(4),
                        callback=lambda row: seen.append(row["global_step"]) or len(seen) < 2)
    assert seen == [128, 256] and stopped.global_step == 256
    # the stop wrote a checkpoint even though checkpoint_every=10 was not reached: a resume continues from it
    resumed = train_ppo(tiny_config(total_timesteps=512, **small), tmp_path, env=LitCellEnv(4))
    assert [r["global_step"] for r in resumed.history] == [384, 512]


def test_ppo_runs_on_minatar(tmp_path):
    torch.set_num_threads(1)
    cfg = PPOConfig(env_id="freeway", env_kwargs={"pomdp": True}, total_timesteps=256, num_envs=4, num_steps=32,
                    num_minibatches=2, update_epochs=1, channels=(4, 8, 8), fc_dim=16, progress_bar=False,
                    tensorboard=True)
    result = train_ppo(cfg, tmp_path)
    assert result.agent.obs_shape == (2, 10, 10) and result.agent.action_names == ["NOOP", "UP", "DOWN"]
    assert any((tmp_path / "tensorboard").iterdir())


def test_bad_config():
    with pytest.raises(ValueError, match="num_minibatches: expected a divisor"):
        train_ppo(tiny_config(num_minibatches=3), env=LitCellEnv(8))
    with pytest.raises(ValueError, match="config.num_envs=4 envs, got 8"):
        train_ppo(tiny_config(num_envs=4, num_minibatches=2), env=LitCellEnv(8))


def test_training_leaves_the_global_rngs_and_threads_alone():
    from xrl._utils import init_rng

    before = (torch.random.get_rng_state(), np.random.get_state()[1].copy(), torch.get_num_threads())
    cfg = tiny_config(total_timesteps=128, num_envs=4, num_steps=32, num_minibatches=2, update_epochs=1)
    result = train_ppo(cfg, env=LitCellEnv(4))
    assert torch.equal(torch.random.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1]) and torch.get_num_threads() == before[2]
    # the initial network is the one torch.manual_seed(seed) gives, as before
    with init_rng(cfg.seed):
        fresh = ImpalaCNN((1, 10, 10), 2, channels=cfg.channels, fc_dim=cfg.fc_dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        reference = ImpalaCNN((1, 10, 10), 2, channels=cfg.channels, fc_dim=cfg.fc_dim)
    for (name, a), b in zip(fresh.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
    assert result.global_step == 128


def _checkpoint_bytes(ckpt):
    return {p.name: p.read_bytes() for p in sorted(ckpt.iterdir())}


def test_an_interrupted_checkpoint_leaves_exactly_the_previous_one(tmp_path, ctrl_c_at_write):
    from xrl import io

    small = dict(num_envs=4, num_steps=32, num_minibatches=2, update_epochs=1, checkpoint_every=1)
    train_ppo(tiny_config(total_timesteps=128, **small), tmp_path, env=LitCellEnv(4))
    ckpt = tmp_path / "checkpoint"
    before = _checkpoint_bytes(ckpt)
    assert "manifest.json" in before and io.load_json(ckpt / "state.json")["update"] == 1
    for at in range(1, 7):  # the 6 files of a checkpoint: agent x2, optimizer x2, state.json, manifest.json
        with ctrl_c_at_write(at, only=".checkpoint.xrl-new-"):
            train_ppo(tiny_config(total_timesteps=256, **small), tmp_path, env=LitCellEnv(4))
        assert _checkpoint_bytes(ckpt) == before, at            # exactly the old checkpoint, byte for byte
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    resumed = train_ppo(tiny_config(total_timesteps=256, **small), tmp_path, env=LitCellEnv(4))
    assert [r["global_step"] for r in resumed.history] == [256]
    assert io.load_json(ckpt / "state.json") == {"global_step": 256, "update": 2}
    assert same_weights(load_agent(ckpt), resumed.agent)


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _write_old_layout(ckpt, agent, optimizer, global_step, update):
    """A checkpoint as xrl wrote it before whole-directory saves (file by file, no manifest), with the optimizer keys
    ``state.<param index>.<name>`` (the layout of the CoinRun run being trained while this was written)."""
    from xrl import io

    ckpt.mkdir(parents=True)
    io.save_tensors(ckpt / "agent.safetensors", agent.state_dict())
    io.save_json(ckpt / "agent.json", {"class": "ImpalaCNN", "model": agent.config(), "metadata": {}})
    sd = optimizer.state_dict()
    tensors = {f"state.{i}.{k}": v if isinstance(v, torch.Tensor) else torch.tensor(v)
               for i, st in sd["state"].items() for k, v in st.items()}
    io.save_tensors(ckpt / "optimizer.safetensors", tensors)
    io.save_json(ckpt / "optimizer.json", {"param_groups": sd["param_groups"]})
    io.save_json(ckpt / "state.json", {"global_step": global_step, "update": update})


def test_resume_from_a_checkpoint_written_in_the_old_layout(tmp_path):
    import shutil

    small = dict(num_envs=4, num_steps=32, num_minibatches=2, update_epochs=1, checkpoint_every=1)
    first = train_ppo(tiny_config(total_timesteps=256, **small), tmp_path / "new", env=LitCellEnv(4))
    # the same state rewritten the old way (the optimizer state read back from the new checkpoint)
    from xrl import io

    ckpt = tmp_path / "new" / "checkpoint"
    agent = load_agent(ckpt)
    optimizer = torch.optim.Adam(agent.parameters(), lr=2e-3, eps=1e-5)
    io.load_optimizer(optimizer, io.load_tensors(ckpt / "optimizer.safetensors"), io.load_json(ckpt / "optimizer.json"))
    _write_old_layout(tmp_path / "old" / "checkpoint", agent, optimizer, first.global_step, 2)
    shutil.copy(tmp_path / "new" / "progress.csv", tmp_path / "old" / "progress.csv")
    assert not (tmp_path / "old" / "checkpoint" / "manifest.json").exists()
    from_new = train_ppo(tiny_config(total_timesteps=512, **small), tmp_path / "new", env=LitCellEnv(4))
    from_old = train_ppo(tiny_config(total_timesteps=512, **small), tmp_path / "old", env=LitCellEnv(4))
    assert [r["global_step"] for r in from_old.history] == [384, 512]
    assert same_weights(from_old.agent, from_new.agent)        # the old layout resumes exactly like the new one
    assert (tmp_path / "old" / "checkpoint" / "manifest.json").is_file()   # and is rewritten in the new layout
