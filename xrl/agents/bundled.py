"""Trained agents shipped inside the package (``xrl/checkpoints/agents/<name>/``)."""
from __future__ import annotations

from pathlib import Path

import torch

from .._validation import error_message, suggest
from .checkpoint import load_agent

_ROOT = Path(__file__).resolve().parent.parent / "checkpoints" / "agents"

#: name -> (environment, what it is); the folder's README.md has the command and the evaluation numbers
BUNDLED_AGENTS: dict[str, str] = {
    "freeway": "MinAtar Freeway (full observations, sticky actions 0.1), IMPALA CNN trained with xrl PPO",
    "breakout": "MinAtar Breakout (sticky actions 0.1), IMPALA CNN trained with xrl PPO",
    "coinrun": "procgen CoinRun (easy, 64x64 RGB), IMPALA CNN 16/32/32 trained with xrl PPO (1.5M frames)",
}


def bundled_agent_dir(name: str) -> Path:
    """The folder of a bundled agent (weights, config, README with the command and evaluation)."""
    key = str(name).lower()
    if key not in BUNDLED_AGENTS:
        raise ValueError(error_message("name", "one of " + ", ".join(map(repr, BUNDLED_AGENTS)), name,
                                       suggest(key, list(BUNDLED_AGENTS)) or None))
    path = _ROOT / key
    if not (path / "agent.safetensors").is_file():
        raise FileNotFoundError(f"bundled agent {key!r}: no weights at {path}; the package was installed without "
                                "its checkpoints (package data)")
    return path


def load_bundled_agent(name: str, device: torch.device | str | None = None):
    """Load a bundled trained agent: ``agent(obs [B, C, H, W]) -> (logits [B, A], value [B])``.

    ``agent.metadata`` holds the environment id/kwargs, training steps and evaluation numbers.

    Examples
    --------
    >>> agent = load_bundled_agent("freeway")
    >>> agent.obs_shape, agent.action_names
    ((7, 10, 10), ['NOOP', 'UP', 'DOWN'])
    """
    return load_agent(bundled_agent_dir(name), device=device)
