"""Encoder, decoder, MLP heads and the actor of the DreamerV2-style agent (public DreamerV2 parameter names)."""
from __future__ import annotations

import torch
import torch.distributions as td
from torch import nn

from .._validation import error_message


def _conv_out(size: int, kernel: int) -> int:
    return size - kernel + 1  # stride 1, no padding


class ObsEncoder(nn.Module):
    """Three 'valid' convolutions (d, 2d, 4d channels, ELU) and a linear layer: [..., C, H, W] -> [..., E].

    Examples
    --------
    >>> enc = ObsEncoder((2, 10, 10), 200)
    >>> tuple(enc(torch.zeros(5, 2, 10, 10)).shape)
    (5, 200)
    """

    def __init__(self, input_shape: tuple, embedding_size: int, depth: int = 16, kernel: int = 3):
        super().__init__()
        self.shape = tuple(input_shape)
        c, h, w = self.shape
        self.convolutions = nn.Sequential(nn.Conv2d(c, depth, kernel), nn.ELU(), nn.Conv2d(depth, 2 * depth, kernel),
                                          nn.ELU(), nn.Conv2d(2 * depth, 4 * depth, kernel), nn.ELU())
        for _ in range(3):
            h, w = _conv_out(h, kernel), _conv_out(w, kernel)
        self.conv_size = 4 * depth * h * w
        self.fc_1 = nn.Identity() if embedding_size == self.conv_size else nn.Linear(self.conv_size, embedding_size)
        self.embedding_size = embedding_size

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.ndim < 3 or tuple(obs.shape[-3:]) != self.shape:
            raise ValueError(error_message("obs", f"a tensor [..., {', '.join(map(str, self.shape))}]", obs,
                                           "observations must have the shape the model was built for "
                                           "(Freeway POMDP: 2 x 10 x 10)"))
        batch_shape = obs.shape[:-3]
        x = self.convolutions(obs.reshape(-1, *self.shape))  # [..., C, H, W] -> [N, C, H, W]
        return self.fc_1(x.reshape(*batch_shape, -1))  # [N, 4d, h, w] -> [..., 4d*h*w] -> [..., E]


class ObsDecoder(nn.Module):
    """Linear layer and three transposed convolutions: model state [..., S] -> mean frame [..., C, H, W].

    The frame likelihood is a unit-variance Normal (as in DreamerV2 MinAtar); `forward` returns the mean.
    """

    def __init__(self, output_shape: tuple, embed_size: int, depth: int = 16, kernel: int = 3):
        super().__init__()
        self.output_shape = tuple(output_shape)
        c, h, w = self.output_shape
        for _ in range(3):
            h, w = _conv_out(h, kernel), _conv_out(w, kernel)
        self.conv_shape = (4 * depth, h, w)
        n = 4 * depth * h * w
        self.linear = nn.Identity() if embed_size == n else nn.Linear(embed_size, n)
        self.decoder = nn.Sequential(nn.ConvTranspose2d(4 * depth, 2 * depth, kernel, 1), nn.ELU(),
                                     nn.ConvTranspose2d(2 * depth, depth, kernel, 1), nn.ELU(),
                                     nn.ConvTranspose2d(depth, c, kernel, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_shape = x.shape[:-1]
        x = self.linear(x.reshape(-1, x.shape[-1])).reshape(-1, *self.conv_shape)  # [..., S] -> [N, 4d, h, w]
        return self.decoder(x).reshape(*batch_shape, *self.output_shape)  # [N, C, H, W] -> [..., C, H, W]


class DenseModel(nn.Module):
    """MLP ``layers`` x (Linear, ELU) then Linear to ``output_size`` (reward, value, discount heads)."""

    def __init__(self, output_size: int, input_size: int, node_size: int = 100, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Linear(input_size, node_size), nn.ELU()]
        for _ in range(layers - 1):
            mods += [nn.Linear(node_size, node_size), nn.ELU()]
        mods.append(nn.Linear(node_size, output_size))
        self.model = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ActionModel(nn.Module):
    """Discrete actor: model state [..., D + C*K] -> (one-hot action [..., A], OneHotCategorical distribution).

    The returned action is a straight-through sample (forward one-hot, gradient of the probabilities), as in the
    public DreamerV2 ``DiscreteActionModel``; ``ActionModel(model_state)`` is what the seed notebook calls.
    """

    def __init__(self, action_size: int, modelstate_size: int, node_size: int = 100, layers: int = 3):
        super().__init__()
        self.action_size = action_size
        mods: list[nn.Module] = [nn.Linear(modelstate_size, node_size), nn.ELU()]
        for _ in range(layers - 1):
            mods += [nn.Linear(node_size, node_size), nn.ELU()]
        mods.append(nn.Linear(node_size, action_size))
        self.model = nn.Sequential(*mods)
        self.generator: torch.Generator | None = None

    def get_action_dist(self, model_state: torch.Tensor) -> td.OneHotCategorical:
        return td.OneHotCategorical(logits=self.model(model_state))

    def forward(self, model_state: torch.Tensor) -> tuple[torch.Tensor, td.OneHotCategorical]:
        dist = self.get_action_dist(model_state)
        probs = dist.probs
        idx = torch.multinomial(probs.detach().reshape(-1, self.action_size), 1, generator=self.generator)
        onehot = torch.zeros_like(probs).reshape(-1, self.action_size).scatter_(1, idx, 1.0).reshape(probs.shape)
        return onehot + (probs - probs.detach()), dist  # forward: exactly one-hot
