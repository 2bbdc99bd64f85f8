"""SB3 .zip policies load, without unpickling anything, into a named-layer module whose logits and values equal
SB3's own; a crafted file does not run code unless trust_pickle=True."""
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


def check_same(model, path, obs, **kwargs):
    policy = load_sb3_policy(path, **kwargs)
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
    import random
    before = torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    policy = check_same(model, tmp_path / "ppo_cartpole.zip", obs)
    load_sb3_policy(tmp_path / "ppo_cartpole.zip", trust_pickle=True)
    assert torch.equal(torch.random.get_rng_state(), before[0]) and random.getstate() == before[2]
    assert np.array_equal(np.random.get_state()[1], before[1])     # loading reseeded nothing
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
    # the custom extractor class exists only as a pickle in the file: the user passes it (no unpickling) ...
    with pytest.raises(ValueError, match=r"features_extractor_class.*custom_objects=.*trust_pickle=True"):
        load_sb3_policy(tmp_path / "ppo_breakout")
    policy = check_same(model, tmp_path / "ppo_breakout", obs,
                        custom_objects={"features_extractor_class": TinyMinAtarCNN})
    # ... or trusts the file, and SB3's own loader unpickles it: the same policy
    trusted = check_same(model, tmp_path / "ppo_breakout", obs, trust_pickle=True)
    torch.testing.assert_close(trusted(torch.as_tensor(obs)), policy(torch.as_tensor(obs)), rtol=0, atol=0)
    assert {"pi_features_extractor.cnn.0", "vf_features_extractor.cnn.0"} <= {n for n, _ in policy.named_modules()}
    with pytest.raises(ValueError, match=r"obs: expected a batch of shape \[B, 4, 10, 10\]"):
        policy(torch.zeros(2, 7, 10, 10))


class ImageEnv(gym.Env):
    """Random 3 x 40 x 40 uint8 frames (NatureCNN's smallest input is 36 x 36)."""

    observation_space = gym.spaces.Box(0, 255, (3, 40, 40), np.uint8)
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


def test_cnn_policy_on_uint8_frames_a2c(tmp_path):
    env = ImageEnv()
    model = sb3.A2C("CnnPolicy", env, n_steps=8, seed=0, device="cpu",
                    policy_kwargs=dict(activation_fn=nn.ReLU, net_arch=dict(pi=[16], vf=[8])))
    model.learn(total_timesteps=16)
    model.save(tmp_path / "a2c_frames.zip")
    obs = np.stack([env.observation_space.sample() for _ in range(3)])
    policy = check_same(model, tmp_path / "a2c_frames.zip", obs, algo="A2C")
    assert policy.normalize_images and "features_extractor.cnn.0" in {n for n, _ in policy.named_modules()}


def _crafted_zip(source, target, flag):
    """A real SB3 file whose pickled observation space is replaced by a payload that writes ``flag`` when unpickled."""
    import base64
    import json
    import pickle
    import zipfile

    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(flag)!r}, 'w').write('pwned')",)

    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.namelist():
            raw = zin.read(item)
            if item == "data":
                data = json.loads(raw)
                data["observation_space"][":serialized:"] = base64.b64encode(pickle.dumps(Payload())).decode()
                raw = json.dumps(data).encode()
            zout.writestr(item, raw)


def test_a_crafted_zip_runs_no_code_unless_trusted(tmp_path):
    env = gym.make("CartPole-v1")
    model = sb3.PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.save(tmp_path / "real.zip")
    flag = tmp_path / "pwned"
    _crafted_zip(tmp_path / "real.zip", tmp_path / "crafted.zip", flag)
    obs = np.stack([env.observation_space.sample() for _ in range(4)])
    policy = check_same(model, tmp_path / "crafted.zip", obs)   # loads from the JSON and the weights only
    assert not flag.exists(), "loading ran code from the file"
    assert policy.num_actions == 2
    with pytest.raises(ValueError):
        load_sb3_policy(tmp_path / "crafted.zip", trust_pickle=True)   # SB3 unpickles: the payload runs
    assert flag.read_text() == "pwned"                                 # (so the payload above was live)


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="corrupt or not an SB3 .zip"):
        load_sb3_policy(bad)
    with pytest.raises(FileNotFoundError):
        load_sb3_policy(tmp_path / "nothing.zip")
    import zipfile
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match=r"not an SB3 .zip \(expected 'data' and 'policy.pth'"):
        load_sb3_policy(tmp_path / "empty.zip")
    with pytest.raises(ValueError, match="algo: expected one of 'PPO', 'A2C'"):
        load_sb3_policy(tmp_path / "empty.zip", algo="DQN")
