"""DDPG actor and critic of CFRL: two hidden layers with LayerNorm + ReLU (as in the paper and alibi)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import register


def _first_linear(input_dim: int | None, hidden_dim: int) -> nn.Module:
    # Lazy like alibi when the input size is unknown; CounterfactualRL materialises it before building optimizers.
    return nn.LazyLinear(hidden_dim) if input_dim is None else nn.Linear(input_dim, hidden_dim)


@register
class Actor(nn.Module):
    """Deterministic policy: state ``[Z, Y_m, Y_t, C]`` -> counterfactual embedding in [-1, 1] (tanh)."""

    def __init__(self, hidden_dim: int = 256, output_dim: int = 64, input_dim: int | None = None) -> None:
        super().__init__()
        self.config = {"hidden_dim": int(hidden_dim), "output_dim": int(output_dim), "input_dim": input_dim}
        self.fc1 = _first_linear(input_dim, hidden_dim)
        self.ln1 = nn.LayerNorm(hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.ln2 = nn.LayerNorm(hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, output_dim)

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """The output before the tanh (CFRL can penalise it to keep the policy out of tanh's flat tails)."""
        x = F.relu(self.ln1(self.fc1(x)))
        x = F.relu(self.ln2(self.fc2(x)))
        return self.fc3(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.preactivation(x))


@register
class Critic(nn.Module):
    """Q-function: ``[state, action]`` -> scalar (regresses the one-step reward)."""

    def __init__(self, hidden_dim: int = 256, input_dim: int | None = None) -> None:
        super().__init__()
        self.config = {"hidden_dim": int(hidden_dim), "input_dim": input_dim}
        self.fc1 = _first_linear(input_dim, hidden_dim)
        self.ln1 = nn.LayerNorm(hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.ln2 = nn.LayerNorm(hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.ln1(self.fc1(x)))
        x = F.relu(self.ln2(self.fc2(x)))
        return self.fc3(x)
