import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # the CI box is small and shared; one thread per xdist worker avoids oversubscription


@pytest.fixture(scope="module")
def tiny_agent():
    from xrl.models.impala import ImpalaCNN
    torch.manual_seed(0)
    return ImpalaCNN((3, 10, 10), num_actions=3, channels=(4, 8, 8), fc_dim=16).eval()


@pytest.fixture(scope="module")
def board_obs():
    """MinAtar-like boards: 3 object channels with a few ones each."""
    rng = np.random.default_rng(0)
    return (rng.random((48, 3, 10, 10)) < 0.08).astype(np.float32)
