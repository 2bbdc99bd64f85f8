"""Integrated gradients to a layer: completeness, agreement with captum, input gradients, errors."""
import torch

torch.set_num_threads(1)  # small shared CI box: one thread per xdist worker
import numpy as np
import pytest
import torch
from torch import nn

from xrl.attribution import integrated_gradients


class TinyAgent(nn.Module):
    """conv -> relu -> conv -> relu -> (policy, value) heads, like a miniature IMPALA agent."""

    def __init__(self, bias=True, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=bias)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=bias)
        self.relu2 = nn.ReLU(inplace=True)
        self.flat = nn.Flatten()
        self.fc_policy = nn.Linear(8 * 5 * 5, 4, bias=bias)
        self.fc_value = nn.Linear(8 * 5 * 5, 1, bias=bias)

    def forward(self, x):
        h = self.flat(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc_policy(h), self.fc_value(h).squeeze(-1)


def _obs(n=4, seed=1):
    return torch.rand(n, 3, 5, 5, generator=torch.Generator().manual_seed(seed))


def _value_at(model, x, layer, acts):
    from xrl.hooks import capture, patch
    with patch(model, layer, acts), capture(model, "fc_value") as got:
        model(x)
    return got["fc_value"].squeeze(-1)


@pytest.mark.parametrize("layer", ["relu1", "conv2"])
def test_completeness_value_head(layer):
    model = TinyAgent(bias=True)
    x = _obs()
    attr = integrated_gradients(model, x, layer, "fc_value", n_steps=200)
    from xrl.hooks import capture
    with capture(model, layer) as acts:
        model(x)
    f_full = _value_at(model, x, layer, acts[layer])
    f_zero = _value_at(model, x, layer, torch.zeros_like(acts[layer]))
    total = attr.reshape(len(x), -1).sum(1)
    assert attr.shape == acts[layer].shape
    np.testing.assert_allclose(total, f_full - f_zero, rtol=0.01, atol=1e-3 * float((f_full - f_zero).abs().max()))


def test_completeness_logit_with_score_fn_and_batching():
    model = TinyAgent(bias=True)
    x = _obs(5)
    a1 = integrated_gradients(model, x, "relu1", "fc_policy", score_fn=lambda lg: lg[:, 2], n_steps=50)
    a2 = integrated_gradients(model, x, "relu1", "fc_policy", score_fn=lambda lg: lg[:, 2], n_steps=50, batch_size=7)
    torch.testing.assert_close(a1, a2, rtol=1e-4, atol=1e-6)


class SkipAgent(nn.Module):
    """conv2's output is added to the tensor it read (a skip around the attributed layer)."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc_value = nn.Linear(6 * 5 * 5, 1)

    def forward(self, x):
        h = self.relu1(self.conv1(x))
        return self.fc_value(torch.relu(self.conv2(h) + h).flatten(1)).squeeze(-1)


def _reference_ig(model, x, layer, n_steps):
    """The definition, one step at a time: acts * mean_k dF/da(k/n * acts), other paths at their values for x."""
    from xrl.hooks import capture, patch
    with capture(model, layer) as acts:
        model(x)
    a = acts[layer]
    total = torch.zeros_like(a)
    for k in range(1, n_steps + 1):
        leaf = (k / n_steps * a).requires_grad_(True)
        with patch(model, layer, lambda _o: leaf.clone()), capture(model, "fc_value", detach=False) as got:
            model(x)
        (g,) = torch.autograd.grad(got["fc_value"].sum(), leaf)
        total += g
    return a * total / n_steps


@pytest.mark.parametrize("agent", [TinyAgent, SkipAgent])
@pytest.mark.parametrize("n_obs", [1, 4])
def test_matches_the_definition_step_by_step(agent, n_obs):
    # the layers before `layer` run once per observation unless a skip around the layer needs the repeated inputs
    model = agent()
    x = _obs(n_obs, seed=2)
    ours = integrated_gradients(model, x, "conv2", "fc_value", n_steps=12)
    torch.testing.assert_close(ours, _reference_ig(model, x, "conv2", 12), rtol=1e-4, atol=1e-6)
    chunked = integrated_gradients(model, x, "conv2", "fc_value", n_steps=12, batch_size=5)   # steps in chunks
    torch.testing.assert_close(chunked, ours, rtol=1e-4, atol=1e-6)


def test_agrees_with_captum_on_bias_free_net():
    captum = pytest.importorskip("captum.attr")
    model = TinyAgent(bias=False).eval()
    x = _ob = _obs(3)
    ours = integrated_gradients(model, x, "relu1", None, score_fn=None, n_steps=16)

    def value(inp):
        return model(inp)[1]

    lig = captum.LayerIntegratedGradients(value, model.relu1)
    theirs = lig.attribute(x, baselines=torch.zeros_like(x), n_steps=16, method="riemann_right")
    # model output's first tensor is the policy logits; compare on the value head instead
    ours_v = integrated_gradients(model, x, "relu1", "fc_value", n_steps=16)
    torch.testing.assert_close(ours_v, theirs.float(), rtol=1e-4, atol=1e-6)
    assert ours.shape == ours_v.shape


def test_input_layer_gives_plain_gradient_and_numpy_roundtrip():
    model = TinyAgent()
    x = _obs(2)
    g = integrated_gradients(model, x.numpy(), "input", "fc_value")
    assert isinstance(g, np.ndarray) and g.shape == (2, 3, 5, 5)
    xr = x.clone().requires_grad_(True)
    model(xr)[1].sum().backward()
    np.testing.assert_allclose(g, xr.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_errors():
    model = TinyAgent()
    x = _obs(2)
    with pytest.raises(ValueError, match="did you mean 'conv2'"):
        integrated_gradients(model, x, "conv_2", "fc_value")
    with pytest.raises(ValueError, match="batch dimension"):
        integrated_gradients(model, x, "relu1", "fc_policy", score_fn=lambda lg: lg.sum())
    with pytest.raises(ValueError, match="obs"):
        integrated_gradients(model, torch.rand(2, 5, 5, 3), "relu1", "fc_value")
    with pytest.raises(ValueError, match="n_steps"):
        integrated_gradients(model, x, "relu1", "fc_value", n_steps=0)
    # hooks are gone after the errors
    assert all(not m._forward_hooks for m in model.modules())
