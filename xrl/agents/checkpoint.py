"""Saving and loading agents: ``agent.safetensors`` (weights) + ``agent.json`` (architecture and metadata).

A save is one transaction (:func:`xrl.io.atomic_directory`): an interrupted save leaves the previous agent, and
:func:`load_agent` checks the directory's manifest (saves made before manifests existed load as they are)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from .. import io
from .._utils import init_rng, resolve_device
from .._validation import error_message
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

    The directory is written as one transaction: an interruption leaves the previous save (or none).
    """
    directory = Path(directory)
    with io.atomic_directory(directory) as tmp:
        write_agent_files(tmp, agent, metadata, half=half)
    return directory


def write_agent_files(directory: Path, agent: ImpalaCNN, metadata: Mapping[str, Any] | None = None, *,
                      half: bool = False) -> None:
    """The two files of :func:`save_agent`, written into ``directory`` (inside a caller's transaction, e.g. the PPO
    checkpoint that adds the optimizer state)."""
    if not isinstance(agent, ImpalaCNN):
        raise TypeError(error_message("agent", "an xrl ImpalaCNN (other modules: save their state_dict with "
                                      "xrl.io.save_module)", type(agent).__name__))
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in agent.state_dict().items()}
    io.save_tensors(directory / f"{AGENT_FILE}.safetensors", state)
    io.save_json(directory / f"{AGENT_FILE}.json",
                 {"class": "ImpalaCNN", "model": agent.config(), "metadata": dict(metadata or {})})


def load_agent(directory, device: torch.device | str | None = None) -> ImpalaCNN:
    """Load an agent saved by :func:`save_agent` (or a PPO run's ``checkpoint`` folder) in eval mode.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a corrupt, incomplete (a file differs
    from the save's manifest) or mismatched checkpoint. Building the network does not consume the global RNG.

    Examples
    --------
    >>> agent = load_agent("runs/freeway/checkpoint")    # doctest: +SKIP
    """
    directory = Path(directory)
    if directory.is_dir() and not (directory / f"{AGENT_FILE}.json").is_file():
        try:  # a PPO run directory: its checkpoint (repairing a save cut between its two renames)
            io.verify_directory(directory / "checkpoint")
            directory = directory / "checkpoint"
        except FileNotFoundError:
            pass
    device = resolve_device(device)
    if not directory.is_file():
        io.verify_directory(directory)  # a complete save (FileNotFoundError when missing)
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
