"""Every model shipped inside the package, behind one loader: ``load_pretrained(name)``.

========================  ============================================================================================
name                      what ``load_pretrained(name)`` returns
========================  ============================================================================================
``"coinrun"``             :class:`~xrl.models.ImpalaCNN` PPO agent for procgen CoinRun (easy; 1.5M frames)
``"breakout"``            :class:`~xrl.models.ImpalaCNN` PPO agent for MinAtar Breakout
``"freeway"``             :class:`~xrl.models.ImpalaCNN` PPO agent for MinAtar Freeway
``"freeway_pomdp"``       :class:`~xrl.worldmodel.DreamerAgent` (DreamerV2 world model + actor) on the Freeway POMDP
``"mnist_classifier"``    :class:`~xrl.models.MNISTClassifier`, seed 000's black box (logits, ``[N, 1, 28, 28]`` in)
``"mnist_autoencoder"``   :class:`~xrl.models.AE` with :class:`~xrl.models.MNISTEncoder` / ``MNISTDecoder`` (latent 64)
========================  ============================================================================================

Each lives in ``xrl/checkpoints/<kind>/<name>/`` as safetensors weights, a JSON description and a README.md with the
exact command that produced it and its evaluation. Loading never unpickles. ``xrl info`` lists the same names.

Examples
--------
>>> from xrl.pretrained import load_pretrained, available
>>> sorted(available())[:3]
['breakout', 'coinrun', 'freeway']
>>> classifier = load_pretrained("mnist_classifier")   # eval mode, float32, on the CPU
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import io
from ._utils import resolve_device
from ._validation import error_message, suggest

CHECKPOINT_ROOT = Path(__file__).resolve().parent / "checkpoints"
MODEL_FILE = "model"


@dataclass(frozen=True)
class Pretrained:
    """One bundled model: where it lives under ``xrl/checkpoints`` and how it is loaded."""

    kind: str
    """``"agent"`` (PPO IMPALA agent), ``"worldmodel"`` (DreamerAgent) or ``"model"`` (a reference network)."""
    folder: str
    """Folder relative to ``xrl/checkpoints``."""
    description: str

    @property
    def path(self) -> Path:
        return CHECKPOINT_ROOT / self.folder


PRETRAINED: dict[str, Pretrained] = {
    "coinrun": Pretrained("agent", "agents/coinrun",
                          "procgen CoinRun (easy, 64x64 RGB) IMPALA PPO agent; 1.5M frames, return 8.0 (README)"),
    "breakout": Pretrained("agent", "agents/breakout", "MinAtar Breakout IMPALA PPO agent"),
    "freeway": Pretrained("agent", "agents/freeway", "MinAtar Freeway IMPALA PPO agent"),
    "freeway_pomdp": Pretrained("worldmodel", "worldmodel/freeway_pomdp",
                                "DreamerV2-style world model + actor on the Freeway POMDP (seed 002)"),
    "mnist_classifier": Pretrained("model", "mnist/classifier", "MNIST CNN classifier of seed 000 (the black box)"),
    "mnist_autoencoder": Pretrained("model", "mnist/autoencoder",
                                    "MNIST autoencoder of seed 000 (latent 64; encoder/decoder for CFRL)"),
}


def available() -> dict[str, str]:
    """``{name: description}`` of every bundled model whose files are present in this installation."""
    return {name: p.description for name, p in PRETRAINED.items() if _weights_file(p).is_file()}


def _weights_file(p: Pretrained) -> Path:
    return p.path / (f"{MODEL_FILE}.safetensors" if p.kind == "model" else "agent.safetensors")


def pretrained_path(name: str) -> Path:
    """The folder of a bundled model (weights, JSON, README with the command that produced it).

    Raises ``ValueError`` for an unknown name (with the closest names) and ``FileNotFoundError`` when the package
    was installed without its checkpoints.
    """
    if not isinstance(name, str) or name not in PRETRAINED:
        hint = suggest(str(name), list(PRETRAINED)) or "run `xrl info` for the list"
        raise ValueError(error_message("name", "one of " + ", ".join(map(repr, PRETRAINED)), name, hint))
    p = PRETRAINED[name]
    if not _weights_file(p).is_file():
        raise FileNotFoundError(f"bundled model {name!r}: no weights at {p.path}; the package was installed without "
                                "its checkpoints (package data)")
    return p.path


def load_pretrained(name: str, device: torch.device | str | None = None) -> nn.Module:
    """Load a bundled model by name (see the module docstring for the names) in eval mode.

    Parameters
    ----------
    name : str
        One of :data:`PRETRAINED` (``xrl info`` lists them).
    device : torch.device or str, optional
        Where to put the weights (default: CPU).

    Returns
    -------
    torch.nn.Module
        An :class:`~xrl.models.ImpalaCNN` for the RL agents (``agent.metadata`` holds its environment and
        evaluation), a :class:`~xrl.worldmodel.DreamerAgent` for ``"freeway_pomdp"``, the reference network for the
        MNIST models (``model.metadata`` holds the command that trained it and its test scores).
    """
    path = pretrained_path(name)
    kind = PRETRAINED[name].kind
    # building a network draws its initial weights from the global RNG; they are overwritten at once, so the
    # caller's RNG state is restored afterwards
    with torch.random.fork_rng(devices=[]):
        if kind == "agent":
            from .agents.checkpoint import load_agent

            return load_agent(path, device=device)
        if kind == "worldmodel":
            from .worldmodel.agent import DreamerAgent

            return DreamerAgent.load(path, resolve_device(device)).eval()
        return load_reference_model(path, device=device)


# ---- reference networks (xrl.models) as safetensors + JSON ----------------------------------------------------------
def _spec(module: nn.Module) -> dict[str, Any]:
    from .models import AE
    from .models._registry import model_spec

    if type(module) is AE:
        return {"class": "AE", "encoder": _spec(module.encoder), "decoder": _spec(module.decoder)}
    spec = model_spec(module)
    if spec is None:
        raise TypeError(error_message("module", "an xrl reference network (xrl.models) or an AE of two of them",
                                      type(module).__name__, "save your own networks with xrl.io.save_module"))
    return spec


def _build(spec: dict[str, Any]) -> nn.Module:
    from .models import AE
    from .models._registry import build_model

    if spec.get("class") == "AE":
        return AE(_build(spec["encoder"]), _build(spec["decoder"]))
    return build_model(spec)


def save_reference_model(directory: str | os.PathLike, module: nn.Module, metadata: dict[str, Any] | None = None,
                         *, half: bool = False) -> Path:
    """Write ``model.safetensors`` + ``model.json`` (architecture + ``metadata``) for an :mod:`xrl.models` network.

    ``half=True`` stores float16 weights (loaded back as float32); record the largest output change in ``metadata``.
    """
    directory = Path(directory)
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().contiguous()
             for k, v in module.state_dict().items()}
    io.save_tensors(directory / f"{MODEL_FILE}.safetensors", state)
    io.save_json(directory / f"{MODEL_FILE}.json", {"model": _spec(module), "metadata": dict(metadata or {}),
                                                    "dtype": "float16" if half else "float32"})
    return directory


def load_reference_model(directory: str | os.PathLike, device: torch.device | str | None = None) -> nn.Module:
    """Load a network written by :func:`save_reference_model` (float32, eval mode, ``.metadata`` attached)."""
    directory = Path(directory)
    config = io.load_json(directory / f"{MODEL_FILE}.json")
    if not isinstance(config.get("model"), dict):
        raise ValueError(f"{directory / (MODEL_FILE + '.json')}: expected an xrl reference-model description with a "
                         f"'model' entry, got keys {sorted(config)}")
    with torch.random.fork_rng(devices=[]):   # the initial weights are overwritten: leave the global RNG alone
        module = _build(config["model"])
    state = io.load_tensors(directory / f"{MODEL_FILE}.safetensors")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    io.load_state_strict(module, state, str(directory))
    module.metadata = config.get("metadata", {})
    return module.to(resolve_device(device)).eval()
