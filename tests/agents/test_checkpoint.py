"""Agent checkpoints: loading builds the network without touching the global RNGs."""
import numpy as np
import torch

from xrl.agents import ImpalaCNN, load_agent, load_bundled_agent, save_agent


def global_state():
    return torch.random.get_rng_state(), np.random.get_state()[1].copy(), torch.get_num_threads()


def assert_same_global_state(before):
    torch_state, numpy_state, threads = global_state()
    assert torch.equal(torch_state, before[0]), "the global torch RNG was consumed"
    assert np.array_equal(numpy_state, before[1]), "numpy's global RNG was consumed"
    assert threads == before[2], "torch's thread count was changed"


def test_loading_agents_leaves_the_global_rngs_alone(tmp_path):
    agent = ImpalaCNN((4, 10, 10), 3, channels=(4, 8, 8), fc_dim=16)
    save_agent(tmp_path / "a", agent)
    before = global_state()
    loaded = load_agent(tmp_path / "a")
    bundled = load_bundled_agent("breakout")
    assert_same_global_state(before)
    x = torch.rand(2, 4, 10, 10)
    torch.testing.assert_close(loaded(x), agent(x), rtol=0, atol=0)
    assert bundled.obs_shape == (4, 10, 10)
