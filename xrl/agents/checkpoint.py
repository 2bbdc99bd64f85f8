"""Saving and loading agents: ``agent.safetensors`` (weights) + ``agent.json`` (architecture and metadata)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from .. import io
from .._utils import init_rng, resolve_device
from ..models.impala import ImpalaCNN

AGENT_FILE = "agent"


def save_agent(directory, agent: ImpalaCNN, metadata: Mapping[str, Any] | None = None, *,
               half: bool = False) -> Path:
    """Write ``directory/agent.safetensors`` and ``directory/agent.json``.

    Parameters
    ----------
    directory : path
    agent : ImpalaCNN
    metadata : dict, optional
        Anything JSON-able to keep next to the architecture (env id, training config, evaluation numbers).
    half : bool, default False
        Store the weights as float16 (half the size; loaded back as float32), used for bundled checkpoints.
    """
    directory = Path(directory)
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in agent.state_dict().items()}
    io.save_tensors(directory / f"{AGENT_FILE}.safetensors", state)
    io.save_json(directory / f"{AGENT_FILE}.json",
                 {"class": "ImpalaCNN", "model": agent.config(), "metadata": dict(metadata or {})})
    return directory


def load_agent(directory, device: torch.device | str | None = None) -> ImpalaCNN:
    """Load an agent saved by :func:`save_agent` (or a PPO run's ``checkpoint`` folder) in eval mode.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a corrupt or mismatched checkpoint.

    Examples
    --------
    >>> agent = load_agent("runs/freeway/checkpoint")    # doctest: +SKIP
    """
    directory = Path(directory)
    if directory.is_dir() and not (directory / f"{AGENT_FILE}.json").is_file() and (directory / "checkpoint").is_dir():
        directory = directory / "checkpoint"
    device = resolve_device(device)
    config = io.load_json(directory / f"{AGENT_FILE}.json")
    if config.get("class") != "ImpalaCNN" or "model" not in config:
        raise ValueError(f"{directory / (AGENT_FILE + '.json')}: expected an xrl agent config with class "
                         f"'ImpalaCNN' and a 'model' entry, got keys {sorted(config)}")
    with init_rng():  # the weights are overwritten: building must not consume the caller's RNG
        agent = ImpalaCNN(**config["model"])
    state = io.load_tensors(directory / f"{AGENT_FILE}.safetensors")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    io.load_state_strict(agent, state, str(directory))
    agent.metadata = config.get("metadata", {})
    return agent.to(device).eval()
