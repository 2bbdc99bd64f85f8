"""Checkpoints shipped with the package (``xrl/checkpoints/worldmodel/<name>/``; see its README.md)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .agent import DreamerAgent

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "worldmodel"
FREEWAY_POMDP = "freeway_pomdp"


def available() -> list[str]:
    """Names of the bundled world-model checkpoints."""
    return sorted(p.name for p in CHECKPOINT_DIR.iterdir() if (p / "agent.json").is_file()) if CHECKPOINT_DIR.is_dir() else []


def load_pretrained(name: str | os.PathLike = FREEWAY_POMDP, device: Any = "cpu") -> DreamerAgent:
    """Load a bundled agent by name (``"freeway_pomdp"``) or any checkpoint directory.

    Examples
    --------
    >>> from xrl.worldmodel.pretrained import load_pretrained
    >>> agent = load_pretrained("freeway_pomdp")  # doctest: +SKIP
    """
    path = Path(name)
    if not (path / "agent.json").is_file():
        path = CHECKPOINT_DIR / str(name)
    if not (path / "agent.json").is_file():
        raise FileNotFoundError(f"name: expected a bundled checkpoint ({', '.join(available()) or 'none found'}) or a "
                                f"checkpoint directory, got {str(name)!r}")
    return DreamerAgent.load(path, device)
