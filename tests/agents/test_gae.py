"""GAE against a hand-computed example."""
import numpy as np
import pytest
import torch

from xrl.agents import compute_gae


def test_gae_hand_computed():
    # gamma 0.9, lambda 0.8; the episode ends after step 1, so step 1 does not bootstrap and step 0 stops there
    # t=2: delta = 1 + 0.9*0.2 - 0.3 = 0.88                       A = 0.88
    # t=1: delta = 0 - 0.4 = -0.4 (done)                          A = -0.4
    # t=0: delta = 1 + 0.9*0.4 - 0.5 = 0.86;  A = 0.86 + 0.9*0.8*(-0.4) = 0.572
    rewards, values, dones = np.array([1.0, 0.0, 1.0]), np.array([0.5, 0.4, 0.3]), np.array([0, 1, 0])
    adv, ret = compute_gae(rewards, values, dones, next_value=0.2, gamma=0.9, gae_lambda=0.8)
    np.testing.assert_allclose(adv, [0.572, -0.4, 0.88], atol=1e-12)
    np.testing.assert_allclose(ret, [1.072, 0.0, 1.18], atol=1e-12)
    assert isinstance(adv, np.ndarray) and adv.dtype == np.float64


def test_gae_torch_batched_matches_numpy_columns():
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    d = rng.random((6, 3)) < 0.3
    nv = rng.normal(size=3).astype(np.float32)
    adv_t, ret_t = compute_gae(torch.from_numpy(r), torch.from_numpy(v), torch.from_numpy(d), torch.from_numpy(nv))
    assert isinstance(adv_t, torch.Tensor) and adv_t.dtype == torch.float32
    for j in range(3):
        adv_j, _ = compute_gae(r[:, j], v[:, j], d[:, j], nv[j])
        np.testing.assert_allclose(adv_t[:, j].numpy(), adv_j, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ret_t.numpy(), adv_t.numpy() + v, rtol=1e-6)


def test_lambda_one_gives_discounted_returns_minus_values():
    r = np.array([1.0, 2.0, 3.0])
    adv, ret = compute_gae(r, np.zeros(3), np.zeros(3), gamma=0.5, gae_lambda=1.0)
    np.testing.assert_allclose(ret, [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3])


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="equal shapes"):
        compute_gae(np.zeros(3), np.zeros(4), np.zeros(3))
