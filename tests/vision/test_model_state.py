"""The vision functions run the user's model in eval mode and leave it exactly as it was: every submodule's mode,
BatchNorm running statistics and the global RNGs, also when the call fails."""
import numpy as np
import pytest
import torch
from torch import nn

from xrl.vision import LayerNMF, get_acts, get_attr, project_out_direction, receptive_field


class BNAgent(nn.Module):
    """A small actor-critic with BatchNorm, as users train them: ``agent(obs) -> (logits, value)``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 10 * 10, 8), nn.ReLU())
        self.fc_policy = nn.Linear(8, 3)
        self.fc_value = nn.Linear(8, 1)

    def forward(self, x):
        h = self.head(self.conv2(torch.relu(self.bn(self.conv(x)))))
        return self.fc_policy(h), self.fc_value(h).squeeze(-1)


def snapshot(model):
    modes = [m.training for m in model.modules()]
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    return modes, buffers, torch.random.get_rng_state(), np.random.get_state()[1].copy()


def assert_unchanged(model, before):
    modes, buffers, torch_rng, np_rng = snapshot(model)
    assert modes == before[0], "a submodule's train/eval mode changed"
    for k, v in before[1].items():
        assert torch.equal(buffers[k], v), f"{k} changed (BatchNorm statistics updated?)"
    assert torch.equal(torch_rng, before[2]) and np.array_equal(np_rng, before[3]), "a global RNG was consumed"


@pytest.fixture()
def bn_agent():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        agent = BNAgent()
    agent.train()
    agent.head.eval()  # the user froze part of the network: its mode must survive too
    return agent


@pytest.fixture()
def obs():
    return (np.random.default_rng(0).random((12, 3, 10, 10)) < 0.2).astype(np.float32)


def test_get_acts_and_get_attr_leave_a_train_mode_model_as_it_was(bn_agent, obs):
    before = snapshot(bn_agent)
    acts = get_acts(bn_agent, "conv2", obs)
    attr = get_attr(bn_agent, "fc_value", "conv2", obs, integrate_steps=4)
    receptive_field(bn_agent, "conv2", (3, 10, 10))
    assert acts.shape == attr.shape == (12, 4, 10, 10)
    assert_unchanged(bn_agent, before)
    # the activations are those of the eval-mode model (running statistics, not the batch's)
    eval_copy = BNAgent()
    eval_copy.load_state_dict(bn_agent.state_dict())
    with torch.no_grad():
        ref = eval_copy.eval().conv2(torch.relu(eval_copy.bn(eval_copy.conv(torch.from_numpy(obs)))))
    np.testing.assert_allclose(acts, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_failing_calls_leave_the_model_as_it_was(bn_agent, obs):
    before = snapshot(bn_agent)
    with pytest.raises(ValueError, match="score_fn: expected a tensor keeping the batch dimension"):
        get_attr(bn_agent, None, "conv2", obs, score_fn=lambda out: out.sum())   # fails after a forward pass
    with pytest.raises(ValueError, match="n_components: expected at most"):
        LayerNMF(bn_agent, "conv2", obs, features=40, progress=False)           # fails in the NMF, after the model
    assert_unchanged(bn_agent, before)


def test_layer_nmf_and_editing_leave_the_model_as_it_was(bn_agent, obs):
    before = snapshot(bn_agent)
    nmf = LayerNMF(bn_agent, "conv2", obs, features=2, attr_layer_name="fc_value", attr_opts={"integrate_steps": 2},
                   progress=False)
    edited = project_out_direction(bn_agent, "conv2", np.ones(4, np.float32), example_obs=obs)
    assert nmf.channel_dirs.shape == (2, 4) and edited.edit_info["next_layer"] == "head.1"
    assert_unchanged(bn_agent, before)


def test_bad_observations_are_named(bn_agent, obs):
    bad = obs.copy()
    bad[0, 0, 0, 0] = np.nan
    for call in (lambda: get_acts(bn_agent, "conv2", bad), lambda: get_attr(bn_agent, "fc_value", "conv2", bad),
                 lambda: LayerNMF(bn_agent, "conv2", bad, features=2, progress=False)):
        with pytest.raises(ValueError, match="(obs|observations): expected finite values, got 1 NaN/inf"):
            call()
    with pytest.raises(ValueError, match="observations: expected a non-empty batch"):
        LayerNMF(bn_agent, "conv2", obs[:0], features=2, progress=False)
    with pytest.raises(TypeError, match="observations: expected a numeric array or tensor"):
        LayerNMF(bn_agent, "conv2", np.array([["a"]]), features=2, progress=False)
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        LayerNMF(lambda x: x, "conv2", obs, progress=False)


def test_a_float64_model_gets_float64_observations(obs):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(400, 1)).double()
    acts = get_acts(model, "1", obs)                                 # float32 observations, float64 weights
    ref = torch.relu(model[0](torch.from_numpy(obs).double())).detach().numpy()
    np.testing.assert_allclose(acts, ref, rtol=1e-12)
    attr = get_attr(model, None, "1", obs, integrate_steps=3)
    assert attr.dtype == np.float64 and np.isfinite(attr).all()
    assert receptive_field(model, "0", (3, 10, 10)).measured
    with pytest.raises(ValueError, match=r"obs_shape: expected \(C, H, W\)"):
        receptive_field(model, "0", (3, 10))
