"""Generalized advantage estimation (Schulman et al., 2016, https://arxiv.org/abs/1506.02438)."""
from __future__ import annotations

import numpy as np
import torch


def compute_gae(rewards, values, dones, next_value=None, gamma: float = 0.99, gae_lambda: float = 0.95):
    """GAE advantages and returns over time-major arrays.

    Parameters
    ----------
    rewards, values, dones : array or tensor, shape [T] or [T, N]
        ``rewards[t]`` and ``dones[t]`` follow the action at step ``t``; ``dones[t]`` is True when the episode
        ended there (so ``values[t + 1]`` belongs to a new episode and is not bootstrapped from).
        ``firsts`` convert as ``dones[t] = firsts[t + 1]``.
    next_value : array or tensor, shape [] or [N], optional
        Value of the observation after the last step (0 if omitted: treat the end as terminal).
    gamma : float, default 0.99
    gae_lambda : float, default 0.95

    Returns
    -------
    advantages, returns : same type, shape and float dtype as ``values``; ``returns = advantages + values``.

    Notes
    -----
    ``delta_t = r_t + gamma * V_{t+1} * (1 - done_t) - V_t`` and
    ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}``.

    Examples
    --------
    >>> adv, ret = compute_gae(np.array([1., 1.]), np.array([0., 0.]), np.array([0, 1]), gamma=0.5, gae_lambda=1.0)
    >>> adv.tolist()
    [1.5, 1.0]
    """
    is_numpy = not isinstance(values, torch.Tensor)
    if is_numpy:
        dtype = np.asarray(values).dtype if np.issubdtype(np.asarray(values).dtype, np.floating) else np.float32
        values_t = torch.as_tensor(np.asarray(values, dtype=dtype))
        rewards_t = torch.as_tensor(np.asarray(rewards, dtype=dtype))
        dones_t = torch.as_tensor(np.asarray(dones, dtype=dtype))
    else:
        values_t = values
        rewards_t = torch.as_tensor(rewards, dtype=values.dtype, device=values.device)
        dones_t = torch.as_tensor(dones, device=values.device).to(values.dtype)
    if rewards_t.shape != values_t.shape or dones_t.shape != values_t.shape:
        raise ValueError(f"rewards, values, dones: expected equal shapes [T] or [T, N], got "
                         f"{tuple(rewards_t.shape)}, {tuple(values_t.shape)}, {tuple(dones_t.shape)}")
    if next_value is None:
        nv = torch.zeros_like(values_t[0])
    else:
        nv = torch.as_tensor(np.asarray(next_value) if not isinstance(next_value, torch.Tensor) else next_value,
                             dtype=values_t.dtype, device=values_t.device).reshape(values_t[0].shape)
    T = values_t.shape[0]
    advantages = torch.zeros_like(values_t)
    last = torch.zeros_like(values_t[0])
    for t in reversed(range(T)):
        next_v = nv if t == T - 1 else values_t[t + 1]
        nonterminal = 1.0 - dones_t[t]
        delta = rewards_t[t] + gamma * next_v * nonterminal - values_t[t]
        last = delta + gamma * gae_lambda * nonterminal * last
        advantages[t] = last
    returns = advantages + values_t
    if is_numpy:
        return advantages.numpy(), returns.numpy()
    return advantages, returns
