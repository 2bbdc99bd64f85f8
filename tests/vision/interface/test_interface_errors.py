"""Bad input gets a clear error naming the problem, raised before any computation, and nothing is written."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xrl.vision.interface import build_interface, resolve_agent

QUICK = dict(trajectories=1, steps=8, observations=16, obs_every=4, features=2, fv_steps=2, progress=False)


def _nothing_written(out):
    return not out.exists() and not any(p.name.startswith(f".{out.name}") for p in out.parent.iterdir())


def test_unknown_agent_lists_the_bundled_names(tmp_path):
    out = tmp_path / "page"
    with pytest.raises(ValueError) as err:
        build_interface("breakot", out, **QUICK)
    text = str(err.value)
    assert text.startswith("agent: expected a bundled agent name (one of 'freeway', 'breakout', 'coinrun')")
    assert "did you mean 'breakout'" in text and "'breakot'" in text
    assert _nothing_written(out)


def test_unknown_layer_lists_close_matches(tmp_path):
    out = tmp_path / "page"
    with pytest.raises(ValueError) as err:
        build_interface("breakout", out, layers=["embedder.blok2"], **QUICK)
    assert "layer: expected the name of a submodule of ImpalaCNN, got 'embedder.blok2'" in str(err.value)
    assert "did you mean 'embedder.block2'" in str(err.value)
    with pytest.raises(ValueError, match=r"layers: expected convolutional layers .* got 'fc_value'.*conv block "
                                         r"outputs are: embedder.block1, embedder.block2, embedder.block3"):
        build_interface("breakout", out, layers="fc_value", **QUICK)
    assert _nothing_written(out)


def test_observations_the_agent_cannot_take(tmp_path):
    out = tmp_path / "page"
    with pytest.raises(ValueError) as err:
        build_interface("freeway", out, env="breakout", **QUICK)
    assert str(err.value).startswith("env: the observations of 'breakout' have shape (4, 10, 10), but the agent "
                                     "takes (7, 10, 10)")
    with pytest.raises(ValueError, match=r"env: expected a MinAtar game .* got 'pong'"):
        build_interface("freeway", out, env="pong", **QUICK)
    assert _nothing_written(out)


def test_existing_output_folder_without_overwrite(tmp_path):
    out = tmp_path / "page"
    out.mkdir()
    (out / "index.html").write_text("an older page")
    with pytest.raises(ValueError, match=r"out: the folder .* already exists and is not empty; pass overwrite=True"):
        build_interface("breakout", out, **QUICK)
    assert (out / "index.html").read_text() == "an older page"
    with pytest.raises(ValueError, match="out: .* exists and is not a folder"):
        build_interface("breakout", out / "index.html", **QUICK)


@pytest.mark.parametrize("name, value, match", [
    ("trajectories", 0, r"trajectories: expected a value >= 1, got 0"),
    ("steps", 2.5, r"steps: expected an int, got 2.5"),
    ("observations", 8, r"observations: expected at least 16"),
    ("features", 64, r"features: expected at most 16 \(the channels of layer 'embedder.block1'\), got 64"),
    ("seed", -1, r"seed: expected a value >= 0, got -1"),
])
def test_bad_numbers(tmp_path, name, value, match):
    out = tmp_path / "page"
    with pytest.raises((ValueError, TypeError), match=match):
        build_interface("breakout", out, **{**QUICK, name: value})
    assert _nothing_written(out)


def test_sb3_zip_without_value_head(tmp_path):
    sb3 = pytest.importorskip("stable_baselines3")
    import gymnasium as gym

    model = sb3.DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=0, buffer_size=64, seed=0, device="cpu")
    model.save(tmp_path / "dqn.zip")
    with pytest.raises(ValueError) as err:
        build_interface(tmp_path / "dqn.zip", tmp_path / "page", env="breakout", **QUICK)
    text = str(err.value)
    assert "has no value head (policy class stable_baselines3.dqn.policies.DQNPolicy" in text
    assert "PPO or A2C" in text
    assert _nothing_written(tmp_path / "page")
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a readable .zip file"):
        resolve_agent(tmp_path / "fake.zip", "breakout")


def test_sb3_actor_critic_needs_env_and_runs(tmp_path):
    """An SB3 PPO with a small CNN on MinAtar Breakout: env is required, then a page is built from it."""
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import nn

    from xrl.envs import make_minatar
    from xrl.vision.interface import read_page_data

    class TinyCNN(BaseFeaturesExtractor):
        def __init__(self, observation_space, features_dim=16):
            super().__init__(observation_space, features_dim)
            self.cnn = nn.Sequential(nn.Conv2d(observation_space.shape[0], 8, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten())
            self.linear = nn.Sequential(nn.Linear(8 * 10 * 10, features_dim), nn.ReLU())

        def forward(self, obs):
            return self.linear(self.cnn(obs))

    model = sb3.PPO("CnnPolicy", make_minatar("breakout"), n_steps=16, batch_size=16, n_epochs=1, seed=0,
                    device="cpu", policy_kwargs=dict(features_extractor_class=TinyCNN, net_arch=[8]))
    model.save(tmp_path / "ppo_breakout.zip")
    with pytest.raises(ValueError, match=r"env: expected the environment id of the SB3 agent"):
        resolve_agent(tmp_path / "ppo_breakout.zip")
    # the custom extractor lives only in the file's pickle: refused unless trusted
    with pytest.raises(ValueError, match=r"trust_pickle=True"):
        build_interface(tmp_path / "ppo_breakout.zip", tmp_path / "page", env="MinAtar/Breakout-v1", **QUICK)
    assert not (tmp_path / "page").exists()
    path = build_interface(tmp_path / "ppo_breakout.zip", tmp_path / "page", env="MinAtar/Breakout-v1",
                           trust_pickle=True, **QUICK)
    data = read_page_data(path)
    # conv block outputs of a conv/relu stack are its ReLUs
    assert data["settings"]["layers"] == ["features_extractor.cnn.1", "features_extractor.cnn.3"]
    assert data["agent"]["kind"] == "sb3" and data["agent"]["env_id"] == "breakout"
    assert data["settings"]["gamma"] == pytest.approx(model.gamma)


def test_conv_block_layers_of_plain_stacks():
    from torch import nn

    from xrl.vision.interface import conv_block_layers

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3),
                                      nn.ReLU(), nn.Flatten())
            self.head = nn.Linear(4 * 6 * 6, 2)

        def forward(self, x):
            return self.head(self.body(x))

    assert conv_block_layers(Net().eval(), torch.zeros(1, 3, 10, 10)) == ["body.2", "body.4"]
    assert np.isfinite(Net()(torch.zeros(1, 3, 10, 10)).detach().numpy()).all()
