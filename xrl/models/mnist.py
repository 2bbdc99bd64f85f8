"""The MNIST networks of the CFRL paper / seed 000 (same layers as alibi's ``cfrl_models``), PyTorch, NCHW."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import register


@register
class MNISTClassifier(nn.Module):
    """CNN classifier: conv(64, 2x2) -> maxpool -> dropout 0.3 -> conv(32, 2x2) -> maxpool -> dropout 0.3 -> fc 256 ->
    fc ``output_dim`` (logits). Input ``[N, 1, 28, 28]`` in [0, 1]."""

    def __init__(self, output_dim: int = 10) -> None:
        super().__init__()
        self.config = {"output_dim": int(output_dim)}
        self.conv1 = nn.Conv2d(1, 64, kernel_size=2, padding=1)
        self.maxpool1 = nn.MaxPool2d(2)
        self.dropout1 = nn.Dropout(0.3)
        self.conv2 = nn.Conv2d(64, 32, kernel_size=2, padding=1)
        self.maxpool2 = nn.MaxPool2d(2)
        self.dropout2 = nn.Dropout(0.3)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 7 * 7, 256)
        self.fc2 = nn.Linear(256, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout1(self.maxpool1(F.relu(self.conv1(x))))   # [N, 64, 14, 14]
        x = self.dropout2(self.maxpool2(F.relu(self.conv2(x))))   # [N, 32, 7, 7]
        return self.fc2(F.relu(self.fc1(self.flatten(x))))


@register
class MNISTEncoder(nn.Module):
    """Encoder: 3 x (conv 3x3 + ReLU + maxpool) with 16/8/8 channels, fc ``latent_dim`` + tanh (latent in [-1, 1],
    the DDPG action range)."""

    def __init__(self, latent_dim: int = 64) -> None:
        super().__init__()
        self.config = {"latent_dim": int(latent_dim)}
        self.latent_dim = int(latent_dim)
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=2)
        self.maxpool3 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(8 * 4 * 4, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(F.relu(self.conv1(x)))   # [N, 16, 14, 14]
        x = self.maxpool2(F.relu(self.conv2(x)))   # [N, 8, 7, 7]
        x = self.maxpool3(F.relu(self.conv3(x)))   # [N, 8, 4, 4]
        return torch.tanh(self.fc1(self.flatten(x)))


@register
class MNISTDecoder(nn.Module):
    """Decoder: fc 128 -> [8, 4, 4] -> (conv 3x3 + ReLU + upsample x2) x 3 -> conv 3x3 + sigmoid -> ``[N, 1, 28, 28]``."""

    def __init__(self, latent_dim: int = 64) -> None:
        super().__init__()
        self.config = {"latent_dim": int(latent_dim)}
        self.latent_dim = int(latent_dim)
        self.fc1 = nn.Linear(latent_dim, 128)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.up1 = nn.Upsample(scale_factor=2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.up2 = nn.Upsample(scale_factor=2)
        self.conv3 = nn.Conv2d(8, 16, 3)
        self.up3 = nn.Upsample(scale_factor=2)
        self.conv4 = nn.Conv2d(16, 1, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(z)).view(z.shape[0], 8, 4, 4)
        x = self.up1(F.relu(self.conv1(x)))        # [N, 8, 8, 8]
        x = self.up2(F.relu(self.conv2(x)))        # [N, 8, 16, 16]
        x = self.up3(F.relu(self.conv3(x)))        # [N, 16, 28, 28]
        return torch.sigmoid(self.conv4(x))


class AE(nn.Module):
    """Autoencoder = encoder + decoder (``forward`` reconstructs)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def glorot_init_(module: nn.Module) -> nn.Module:
    """Keras-style init (xavier-uniform weights, zero bias). The MNIST AE collapses to the mean image with PyTorch's
    default init (measured: BCE stuck near 0.263); with this it trains normally."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module
