"""Explain Stable-Baselines3 policies: load a PPO/A2C ``.zip`` into a module with named layers, logits and a value.

The returned :class:`SB3Policy` follows the xrl agent protocol, ``policy(obs) -> (logits [B, A], value [B])``, and
re-registers SB3's pieces under readable names::

    features_extractor        SB3's (shared) features extractor (NatureCNN ``features_extractor.cnn.0`` ..., custom)
    pi_features_extractor /   only when SB3 used separate extractors (``share_features_extractor=False``)
    vf_features_extractor
    mlp_extractor.policy_net  the policy MLP trunk
    mlp_extractor.value_net   the value MLP trunk
    fc_policy                 SB3's ``action_net`` (logits)
    fc_value                  SB3's ``value_net`` (value head)

Observations are preprocessed exactly as SB3 does (``preprocess_obs``: images scaled by 1/255 when SB3 normalised
them). Only discrete action spaces are supported (logits). SB3 ``.zip`` files contain pickled Python objects: load
only files you trust.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._utils import resolve_device
from .._validation import error_message


class SB3Policy(nn.Module):
    """An SB3 ``ActorCriticPolicy`` re-wrapped as ``policy(obs) -> (logits [B, A], value [B])``."""

    def __init__(self, sb3_policy: Any):
        super().__init__()
        from gymnasium import spaces

        if not isinstance(sb3_policy.action_space, spaces.Discrete):
            raise ValueError(error_message("policy.action_space", "a Discrete action space (policy logits)",
                                           sb3_policy.action_space))
        self.observation_space = sb3_policy.observation_space
        self.normalize_images = bool(getattr(sb3_policy, "normalize_images", True))
        self.share_features_extractor = bool(getattr(sb3_policy, "share_features_extractor", True))
        if self.share_features_extractor:
            self.features_extractor = sb3_policy.features_extractor
        else:
            self.pi_features_extractor = sb3_policy.pi_features_extractor
            self.vf_features_extractor = sb3_policy.vf_features_extractor
        self.mlp_extractor = sb3_policy.mlp_extractor
        self.fc_policy = sb3_policy.action_net
        self.fc_value = sb3_policy.value_net
        self.obs_shape = tuple(self.observation_space.shape)
        self.num_actions = int(sb3_policy.action_space.n)
        self.action_names = None

    def _prepare(self, obs: Any) -> torch.Tensor:
        from stable_baselines3.common.preprocessing import preprocess_obs

        device = self.fc_value.weight.device
        if not isinstance(obs, torch.Tensor):
            obs = torch.as_tensor(np.asarray(obs))
        if tuple(obs.shape[1:]) != self.obs_shape:
            dims = ", ".join(map(str, self.obs_shape))
            raise ValueError(f"obs: expected a batch of shape [B, {dims}] (the SB3 policy's observation space), "
                             f"got shape {tuple(obs.shape)}")
        return preprocess_obs(obs.to(device), self.observation_space, normalize_images=self.normalize_images).float()

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._prepare(obs)
        if self.share_features_extractor:
            features = self.features_extractor(x)
            latent_pi, latent_vf = self.mlp_extractor(features)
        else:
            latent_pi = self.mlp_extractor.forward_actor(self.pi_features_extractor(x))
            latent_vf = self.mlp_extractor.forward_critic(self.vf_features_extractor(x))
        return self.fc_policy(latent_pi), self.fc_value(latent_vf).squeeze(-1)


def load_sb3_policy(path: str | Path, device: torch.device | str | None = None, algo: str = "PPO",
                    custom_objects: dict[str, Any] | None = None) -> SB3Policy:
    """Load a Stable-Baselines3 ``.zip`` (PPO or A2C, discrete actions) as an :class:`SB3Policy` in eval mode.

    Parameters
    ----------
    path : path
        The ``.zip`` written by ``model.save(path)``.
    device : optional
        Where to put the policy (default CPU).
    algo : {"PPO", "A2C"}
    custom_objects : dict, optional
        Passed to SB3's ``load`` (e.g. to replace objects that cannot be unpickled).

    Examples
    --------
    >>> policy = load_sb3_policy("ppo_cartpole.zip")     # doctest: +SKIP
    >>> logits, value = policy(obs)
    """
    try:
        import stable_baselines3 as sb3
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ImportError('loading SB3 policies needs stable-baselines3: pip install "xrl[sb3]"') from exc
    path = Path(path)
    if not path.is_file() and path.with_suffix(".zip").is_file():
        path = path.with_suffix(".zip")
    if not path.is_file():
        raise FileNotFoundError(f"path: expected an existing SB3 .zip file, got {str(path)!r} (missing)")
    algos = {"PPO": sb3.PPO, "A2C": sb3.A2C}
    if algo not in algos:
        raise ValueError(error_message("algo", "one of 'PPO', 'A2C'", algo))
    dev = resolve_device(device)
    try:
        model = algos[algo].load(str(path), device=dev, custom_objects=custom_objects)
    except Exception as exc:  # zipfile.BadZipFile, KeyError, RuntimeError, ... from a damaged file
        raise ValueError(f"{path}: could not load as an SB3 {algo} model ({type(exc).__name__}: {exc}); "
                         "the file is corrupt or not an SB3 .zip") from exc
    return SB3Policy(model.policy).to(dev).eval()
