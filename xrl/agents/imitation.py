"""Seed 003's trajectory files: ``imitation``'s ``.npz`` format, read without unpickling.

``imitation`` (``imitation.data.types.save``, versions up to 0.3) writes a list of trajectories as one ``.npz``::

    obs        [sum(T_i + 1), ...]   every trajectory's observations, one more than its actions (the final one)
    acts       [sum(T_i), ...]       actions
    infos      [sum(T_i)] object     per-step info dicts (pickled objects: NOT read here)
    terminal   [n] bool              whether each trajectory ended in a terminal state
    indices    [n - 1] int           cumulative action counts where trajectories split
    rews       [sum(T_i)] (optional) rewards

:func:`load_expert_trajs` (the seed's ``demonstrations.load_expert_trajs``) returns the trajectories and
:func:`flatten_trajectories` (``imitation.data.rollout.flatten_trajectories``) the transitions with ``.obs``,
``.acts``, ``.next_obs``, ``.dones``. The flattened object also answers lucid's dictionary keys
(``transitions["observations"][0]`` is trajectory 0's observations channels-first), which seed 003 uses further down.
The ``infos`` entry is skipped: reading it needs ``allow_pickle=True``, and xrl never unpickles a file.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .._validation import error_message

_REQUIRED = ("obs", "acts", "terminal", "indices")


@dataclass(frozen=True)
class ExpertTrajectory:
    """One trajectory as ``imitation`` stores it: ``obs`` has one more step than ``acts`` (the final observation)."""

    obs: np.ndarray
    acts: np.ndarray
    terminal: bool
    rews: np.ndarray | None = None
    infos: None = None
    """Always None: imitation pickles the info dicts, and xrl does not unpickle."""

    def __len__(self) -> int:
        return len(self.acts)


def load_expert_trajs(path: str | os.PathLike, n_expert_demos: int | None = None) -> list[ExpertTrajectory]:
    """Read an ``imitation`` ``.npz`` trajectory file (schema in the module docstring); keep the first
    ``n_expert_demos`` trajectories (None: all), as ``imitation.scripts.common.demonstrations.load_expert_trajs``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for another format or inconsistent arrays.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(error_message("path", "an imitation .npz trajectory file", str(path),
                                       "newer imitation versions save a HuggingFace datasets folder: load it with "
                                       "imitation and pass the arrays to xrl directly"))
    if not path.is_file():
        raise FileNotFoundError(f"path: expected an existing .npz trajectory file, got {str(path)!r} (missing)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _REQUIRED if k not in data.files]
            if missing:
                raise ValueError(f"{path}: not an imitation trajectory file (missing keys {missing}; it has "
                                 f"{sorted(data.files)}); expected obs, acts, infos, terminal, indices")
            obs, acts = data["obs"], data["acts"]
            terminal, indices = data["terminal"].astype(bool), data["indices"].astype(np.int64)
            rews = data["rews"] if "rews" in data.files else None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc}); the file is corrupt or truncated") from exc
    n = len(terminal)
    if terminal.ndim != 1 or len(indices) != max(n - 1, 0):
        raise ValueError(f"{path}: inconsistent trajectory file: {n} terminal flags but {len(indices)} split "
                         f"indices (expected {max(n - 1, 0)})")
    if len(obs) != len(acts) + n:
        raise ValueError(f"{path}: inconsistent trajectory file: {len(obs)} observations for {len(acts)} actions in "
                         f"{n} trajectories (expected actions + trajectories = {len(acts) + n})")
    if rews is not None and len(rews) != len(acts):
        raise ValueError(f"{path}: inconsistent trajectory file: {len(rews)} rewards for {len(acts)} actions")
    obs_parts = np.split(obs, indices + np.arange(1, n))        # each trajectory keeps its final observation
    act_parts = np.split(acts, indices)
    rew_parts = np.split(rews, indices) if rews is not None else [None] * n
    trajs = [ExpertTrajectory(o, a, bool(t), r) for o, a, t, r in zip(obs_parts, act_parts, terminal, rew_parts)]
    if n_expert_demos is not None:
        if not isinstance(n_expert_demos, int) or n_expert_demos < 1:
            raise ValueError(error_message("n_expert_demos", "None or a positive int", n_expert_demos))
        if n_expert_demos > len(trajs):
            raise ValueError(error_message("n_expert_demos", f"at most the {len(trajs)} trajectories in {path}",
                                           n_expert_demos))
        trajs = trajs[:n_expert_demos]
    return trajs


@dataclass(frozen=True)
class Transitions:
    """Flattened trajectories (``imitation``'s ``Transitions``): ``obs[i]`` -> ``acts[i]`` -> ``next_obs[i]``.

    ``transitions["observations" | "actions" | "rewards" | "firsts"]`` gives lucid's per-trajectory view (a list
    with one array per trajectory; observations channels-first, as xrl's networks take them).
    """

    obs: np.ndarray
    acts: np.ndarray
    next_obs: np.ndarray
    dones: np.ndarray
    rews: np.ndarray | None
    lengths: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.acts)

    def _split(self, a: np.ndarray) -> list[np.ndarray]:
        return np.split(a, np.cumsum(self.lengths)[:-1])

    def __getitem__(self, key: str) -> list[np.ndarray]:
        if key == "observations":
            parts = self._split(self.obs)
            return [np.moveaxis(p, -1, 1) if p.ndim == 4 and p.shape[-1] in (1, 3, 4) and p.shape[1] not in (1, 3, 4)
                    else p for p in parts]
        if key == "actions":
            return self._split(self.acts)
        if key == "rewards":
            if self.rews is None:
                raise KeyError("rewards: this trajectory file holds no rewards ('rews')")
            return self._split(self.rews)
        if key == "firsts":
            return [np.arange(n) == 0 for n in self.lengths]
        raise KeyError(error_message("key", "'observations', 'actions', 'rewards' or 'firsts' (lucid's trajectory "
                                     "keys); use .obs / .acts for the flat arrays", key))


def flatten_trajectories(trajectories: Sequence[ExpertTrajectory]) -> Transitions:
    """Concatenate trajectories into transitions (``obs`` without each trajectory's final observation)."""
    trajectories = list(trajectories)
    if not trajectories or not all(isinstance(t, ExpertTrajectory) for t in trajectories):
        raise TypeError(error_message("trajectories", "a non-empty list from load_expert_trajs", type(trajectories)))
    dones = [np.r_[np.zeros(len(t) - 1, bool), [t.terminal]] for t in trajectories]
    rews = None
    if all(t.rews is not None for t in trajectories):
        rews = np.concatenate([t.rews for t in trajectories])
    return Transitions(obs=np.concatenate([t.obs[:-1] for t in trajectories]),
                       acts=np.concatenate([t.acts for t in trajectories]),
                       next_obs=np.concatenate([t.obs[1:] for t in trajectories]),
                       dones=np.concatenate(dones), rews=rews, lengths=tuple(len(t) for t in trajectories))
