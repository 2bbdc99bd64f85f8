"""Seed 002's `Evaluator(config, device).load_model(config, "freeway_pomdp")` loads the bundled world model."""
import pytest
import torch

from xrl.envs import make_minatar
from xrl.pretrained import load_pretrained, pretrained_path
from xrl.worldmodel import Evaluator, MinAtarConfig


def _config():
    env = make_minatar("freeway", pomdp=True, one_hot_actions=True)
    return MinAtarConfig(env="freeway", obs_shape=env.observation_space.shape,
                         action_size=env.action_space.shape[0], eval_episode=10, eval_render=False)


def test_bundled_name_loads_the_same_weights_as_load_pretrained():
    config = _config()
    evaluator = Evaluator(config, "cpu")
    evaluator.load_model(evaluator.config, "freeway_pomdp")
    reference = load_pretrained("freeway_pomdp")
    for (k, a), (k2, b) in zip(evaluator.agent.state_dict().items(), reference.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    state = evaluator.RSSM._init_rssm_state(batch_size=1)      # the seed's next cells
    assert state.deter.shape == (1, 200) and evaluator.action_size == 3


def test_a_folder_still_loads_and_an_unknown_name_fails_clearly(tmp_path):
    config = _config()
    assert Evaluator(config, "cpu").load_model(config, pretrained_path("freeway_pomdp")).agent is not None
    with pytest.raises((FileNotFoundError, ValueError)):
        Evaluator(config, "cpu").load_model(config, str(tmp_path / "freeway_pomdpp"))
