"""SB3 .zip policies load into a named-layer module whose logits and values equal SB3's own."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

sb3 = pytest.importorskip("stable_baselines3")
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor  # noqa: E402

from xrl.agents import load_sb3_policy  # noqa: E402
from xrl.envs import make_minatar  # noqa: E402


class TinyMinAtarCNN(BaseFeaturesExtractor):
    """A features extractor that fits 10 x 10 MinAtar grids (SB3's NatureCNN cannot)."""

    def __init__(self, observation_space, features_dim=32):
        super().__init__(observation_space, features_dim)
        c = observation_space.shape[0]
        self.cnn = nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(8 * 10 * 10, features_dim), nn.ReLU())

    def forward(self, obs):
        return self.linear(self.cnn(obs))


def sb3_outputs(model, obs):
    obs_t, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        dist = model.policy.get_distribution(obs_t)
        return dist.distribution.logits, model.policy.predict_values(obs_t).squeeze(-1)


def check_same(model, path, obs):
    policy = load_sb3_policy(path)
    logits, value = policy(torch.as_tensor(obs))
    ref_logits, ref_value = sb3_outputs(model, obs)
    # SB3's Categorical normalises logits (log-softmax); compare the same thing
    torch.testing.assert_close(torch.log_softmax(logits, -1), ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(value, ref_value, atol=1e-5, rtol=1e-5)
    return policy


def test_mlp_policy_cartpole(tmp_path):
    env = gym.make("CartPole-v1")
    model = sb3.PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=64)
    model.save(tmp_path / "ppo_cartpole.zip")
    obs = np.stack([env.observation_space.sample() for _ in range(6)])
    policy = check_same(model, tmp_path / "ppo_cartpole.zip", obs)
    names = {n for n, _ in policy.named_modules()}
    assert {"features_extractor", "mlp_extractor.policy_net", "mlp_extractor.value_net", "fc_policy",
            "fc_value"} <= names
    assert policy.num_actions == 2 and not policy.training


def test_custom_cnn_policy_minatar_with_separate_extractors(tmp_path):
    env = make_minatar("breakout")
    kwargs = dict(features_extractor_class=TinyMinAtarCNN, share_features_extractor=False, net_arch=[16])
    model = sb3.PPO("CnnPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu",
                    policy_kwargs=kwargs)
    model.learn(total_timesteps=64)
    model.save(tmp_path / "ppo_breakout")
    obs = np.stack([env.reset(seed=i)[0] for i in range(4)])
    policy = check_same(model, tmp_path / "ppo_breakout", obs)
    assert {"pi_features_extractor.cnn.0", "vf_features_extractor.cnn.0"} <= {n for n, _ in policy.named_modules()}
    with pytest.raises(ValueError, match=r"obs: expected a batch of shape \[B, 4, 10, 10\]"):
        policy(torch.zeros(2, 7, 10, 10))


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="corrupt or not an SB3 .zip"):
        load_sb3_policy(bad)
    with pytest.raises(FileNotFoundError):
        load_sb3_policy(tmp_path / "nothing.zip")
