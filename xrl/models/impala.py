"""IMPALA CNN actor-critic (Espeholt et al., 2018, https://arxiv.org/abs/1802.01561), as in "Understanding RL Vision".

Layer names are stable and match the ``ImpalaModel``/``CategoricalPolicy`` of seed 003 (reward_preprocessing), so
``get_layer(model, "embedder.block2.res2.conv2")``-style addressing ports line by line::

    embedder                      ImpalaModel
    embedder.block1               ImpalaBlock: conv -> max-pool 3x3/2 -> res1 -> res2
    embedder.block1.conv          Conv2d(C, 16)
    embedder.block1.res1          ResidualBlock: x + conv2(relu(conv1(relu(x))))
    embedder.block1.res1.conv1 / .conv2
    ... block2 (32 channels), block3 (32 channels)
    embedder.fc                   Linear(32 * h * w, fc_dim) (followed by a functional ReLU)
    embedder.relu_after_convs     ReLU module applied to block3's output [B, 32, h, w] (hooks see it)
    fc_policy                     Linear(fc_dim, A): policy logits
    fc_value                      Linear(fc_dim, 1): state value (returned as [B])

Spatial sizes: 64 -> 32 -> 16 -> 8 for CoinRun's 64x64 frames; 10 -> 5 -> 3 -> 2 for MinAtar's 10x10 grids.
``uint8`` input is divided by 255 (CoinRun frames); float input is used as is (MinAtar's {0, 1} channels).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class ResidualBlock(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` with two 3x3 convolutions of ``channels`` channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out))
        return x + out


class ImpalaBlock(nn.Module):
    """3x3 conv to ``out_channels``, 3x3 max-pool with stride 2 (padding 1), two residual blocks."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.res1 = ResidualBlock(out_channels)
        self.res2 = ResidualBlock(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        return self.res2(self.res1(x))


def _pooled(size: int) -> int:
    return (size + 2 * 1 - 3) // 2 + 1


class ImpalaModel(nn.Module):
    """The IMPALA embedder: three :class:`ImpalaBlock` s, ReLU, flatten, ``fc`` and ReLU -> ``[B, fc_dim]``."""

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (16, 32, 32), fc_dim: int = 256,
                 input_hw: tuple[int, int] = (64, 64)):
        super().__init__()
        if len(channels) != 3:
            raise ValueError(f"channels: expected 3 block widths like (16, 32, 32), got {tuple(channels)!r}")
        self.block1 = ImpalaBlock(in_channels, channels[0])
        self.block2 = ImpalaBlock(channels[0], channels[1])
        self.block3 = ImpalaBlock(channels[1], channels[2])
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        h, w = input_hw
        for _ in range(3):
            h, w = _pooled(h), _pooled(w)
        self.out_hw = (h, w)
        self.fc = nn.Linear(channels[2] * h * w, fc_dim)
        self.relu_after_convs = nn.ReLU()
        self.output_dim = fc_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        x = self.relu_after_convs(x)  # [B, C3, h, w]
        x = torch.flatten(x, start_dim=1)  # [B, C3, h, w] -> [B, C3*h*w]
        return F.relu(self.fc(x))


class ImpalaCNN(nn.Module):
    """IMPALA CNN actor-critic: ``agent(obs) -> (logits [B, A], value [B])``.

    Parameters
    ----------
    obs_shape : tuple of int, default (3, 64, 64)
        Observation shape ``(C, H, W)``: ``(3, 64, 64)`` for CoinRun, ``(C, 10, 10)`` for MinAtar.
    num_actions : int, default 15
        Number of discrete actions.
    channels : tuple of int, default (16, 32, 32)
        Widths of the three IMPALA blocks.
    fc_dim : int, default 256
        Width of the embedding ``embedder.fc``.
    action_names : list of str, optional
        Kept for display (``agent.action_names``) and saved with the checkpoint.

    Examples
    --------
    >>> agent = ImpalaCNN((7, 10, 10), num_actions=3)
    >>> logits, value = agent(torch.zeros(2, 7, 10, 10))
    >>> tuple(logits.shape), tuple(value.shape)
    ((2, 3), (2,))
    """

    def __init__(self, obs_shape: Sequence[int] = (3, 64, 64), num_actions: int = 15,
                 channels: Sequence[int] = (16, 32, 32), fc_dim: int = 256,
                 action_names: Sequence[str] | None = None):
        super().__init__()
        obs_shape = tuple(int(s) for s in obs_shape)
        if len(obs_shape) != 3 or min(obs_shape) < 1:
            raise ValueError(f"obs_shape: expected (C, H, W) with positive sizes, got {obs_shape!r}")
        if int(num_actions) < 1:
            raise ValueError(f"num_actions: expected a positive integer, got {num_actions!r}")
        self.obs_shape = obs_shape
        self.num_actions = int(num_actions)
        self.channels = tuple(int(c) for c in channels)
        self.fc_dim = int(fc_dim)
        self.action_names = list(action_names) if action_names is not None else None
        self.embedder = ImpalaModel(obs_shape[0], self.channels, self.fc_dim, obs_shape[1:])
        self.fc_policy = nn.Linear(self.fc_dim, self.num_actions)
        self.fc_value = nn.Linear(self.fc_dim, 1)
        # CleanRL's initialisation of the heads: near-uniform initial policy, unit-scale value
        nn.init.orthogonal_(self.fc_policy.weight, gain=0.01)
        nn.init.zeros_(self.fc_policy.bias)
        nn.init.orthogonal_(self.fc_value.weight, gain=1.0)
        nn.init.zeros_(self.fc_value.bias)

    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments (saved next to the weights)."""
        return {"obs_shape": list(self.obs_shape), "num_actions": self.num_actions, "channels": list(self.channels),
                "fc_dim": self.fc_dim, "action_names": self.action_names}

    def _prepare(self, obs: Any) -> torch.Tensor:
        device = self.fc_value.weight.device
        if not isinstance(obs, torch.Tensor):
            obs = torch.as_tensor(np.asarray(obs), device=device)
        if obs.dim() != 4 or tuple(obs.shape[1:]) != self.obs_shape:
            c, h, w = self.obs_shape
            hint = ""
            if obs.dim() == 4 and tuple(obs.shape[1:]) == (h, w, c):
                hint = "; the input looks channels-last: use obs.permute(0, 3, 1, 2)"
            elif tuple(obs.shape) == self.obs_shape:
                hint = "; add a batch dimension: obs[None]"
            raise ValueError(f"obs: expected a batch of shape [B, {c}, {h}, {w}] (channels first), "
                             f"got shape {tuple(obs.shape)}{hint}")
        if obs.dtype == torch.uint8:
            return obs.to(device=device, dtype=torch.float32) / 255.0
        return obs.to(device=device, dtype=self.fc_value.weight.dtype)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs [B, C, H, W]`` (float, or uint8 scaled by 1/255) -> ``(logits [B, A], value [B])``."""
        hidden = self.embedder(self._prepare(obs))  # [B, fc_dim]
        return self.fc_policy(hidden), self.fc_value(hidden).squeeze(-1)

    def get_action_and_value(self, obs: torch.Tensor, action: torch.Tensor | None = None,
                             generator: torch.Generator | None = None):
        """CleanRL's helper: sample (or score) actions -> ``(action, log_prob, entropy, value)``."""
        logits, value = self(obs)
        logp_all = torch.log_softmax(logits, dim=-1)
        if action is None:
            action = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(-1)
        logp = logp_all.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return action, logp, entropy, value

    def extra_repr(self) -> str:
        return f"obs_shape={self.obs_shape}, num_actions={self.num_actions}"
