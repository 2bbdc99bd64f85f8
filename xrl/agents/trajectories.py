"""Agent rollouts as arrays, saved as ``.npz`` with a documented schema, plus an infrequently sampled observation set.

``.npz`` schema (written by :meth:`Trajectories.save`, read by :meth:`Trajectories.load`; no pickled objects)::

    key        shape / dtype                      meaning
    obs        [N, T, C, H, W]  float32 or uint8  observation seen before acting at step t (MinAtar: {0,1} float32;
                                                  CoinRun: uint8 RGB, channels first)
    actions    [N, T]           int64             action taken at step t
    rewards    [N, T]           float32           reward received after the action at step t
    firsts     [N, T]           bool              obs[n, t] is the first observation of an episode
    dones      [N, T]           bool              the episode ended after the action at step t (dones[:, t] ==
                                                  firsts[:, t + 1])
    values     [N, T]           float32           the agent's value estimate V(obs[n, t])
    logits     [N, T, A]        float32           the agent's policy logits at obs[n, t]
    objects    [N, T, K, H, W]  bool              (MinAtar only) all object channels, even when obs hides some
    meta       []               str (JSON)        env_id, env_kwargs, action_names, channel_names, object_names, seed

``N`` is the number of parallel environments (one contiguous trajectory each, episodes separated by ``firsts``),
``T`` the number of steps. :meth:`Trajectories.flatten` gives ``[N*T, ...]`` arrays (like ``imitation``'s
``flatten_trajectories``); :meth:`Trajectories.episodes` splits them into single episodes.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._utils import resolve_device, torch_generator
from ..io import atomic_file
from .._validation import check_scalar, error_message
from ..envs.rollout import ActorCriticPolicy, rollout

_ARRAY_KEYS = ("obs", "actions", "rewards", "firsts", "dones", "values", "logits")


@dataclass
class Trajectories:
    """Rollouts of an agent, env-major ``[N, T, ...]`` (see the module docstring for the schema)."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    firsts: np.ndarray
    dones: np.ndarray
    values: np.ndarray
    logits: np.ndarray
    objects: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check the schema's shapes: every array [N, T, ...] with the same N and T (clear errors, not misaligned
        data later)."""
        for key in (*_ARRAY_KEYS, "objects"):
            value = getattr(self, key)
            if value is None and key == "objects":
                continue
            if not isinstance(value, np.ndarray):
                raise TypeError(error_message(key, "a numpy array (see the schema in xrl.agents.trajectories)",
                                              type(value).__name__))
        N, T = self.actions.shape[:2] if self.actions.ndim == 2 else (None, None)
        if N is None:
            raise ValueError(error_message("actions", "an array [N, T]", self.actions))
        for key in (*_ARRAY_KEYS, "objects"):
            value = getattr(self, key)
            ndim = {"obs": 5, "logits": 3, "objects": 5}.get(key, 2)
            if value is not None and (value.ndim != ndim or value.shape[:2] != (N, T)):
                dims = ", ".join(["N", "T", "C", "H", "W"][:ndim] if key != "logits" else ["N", "T", "A"])
                raise ValueError(error_message(key, f"an array [{dims}] with N={N}, T={T} (as actions)", value))
        if not isinstance(self.meta, dict):
            raise TypeError(error_message("meta", "a dict", type(self.meta).__name__))

    @property
    def num_envs(self) -> int:
        return int(self.actions.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.actions.shape[1])

    def flatten(self) -> dict[str, np.ndarray]:
        """All arrays reshaped ``[N, T, ...] -> [N*T, ...]`` (env 0's steps first)."""
        out = {k: getattr(self, k).reshape(-1, *getattr(self, k).shape[2:]) for k in _ARRAY_KEYS}
        if self.objects is not None:
            out["objects"] = self.objects.reshape(-1, *self.objects.shape[2:])
        return out

    def episodes(self, complete_only: bool = True) -> list[dict[str, np.ndarray]]:
        """Split into episodes (dicts of ``[L, ...]`` arrays); ``complete_only`` keeps those seen start to end."""
        out = []
        for n in range(self.num_envs):
            starts = list(np.flatnonzero(self.firsts[n]))
            bounds = ([0] if not starts or starts[0] != 0 else []) + starts + [self.num_steps]
            for a, b in zip(bounds[:-1], bounds[1:]):
                if b <= a:
                    continue
                complete = bool(self.firsts[n, a]) and bool(self.dones[n, b - 1])
                if complete_only and not complete:
                    continue
                ep = {k: getattr(self, k)[n, a:b] for k in _ARRAY_KEYS}
                if self.objects is not None:
                    ep["objects"] = self.objects[n, a:b]
                out.append(ep)
        return out

    def save(self, path: str | Path) -> Path:
        """Write a compressed ``.npz`` (schema in the module docstring); ``.npz`` is appended to a path without it.

        The file is replaced in one step (:func:`xrl.io.atomic_file`): an interrupted save leaves the previous file.
        Returns the path written."""
        path = Path(path)
        path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
        arrays = {k: getattr(self, k) for k in _ARRAY_KEYS}
        if self.objects is not None:
            arrays["objects"] = self.objects
        arrays["meta"] = np.array(json.dumps(self.meta))
        with atomic_file(path) as f:
            np.savez_compressed(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Trajectories":
        """Read a file written by :meth:`save` (``allow_pickle=False``); missing keys raise ``ValueError``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: expected an existing .npz file, got {str(path)!r} (missing)")
        try:
            with np.load(path, allow_pickle=False) as data:
                contents = {k: data[k] for k in data.files}
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a readable .npz file ({exc}); the file is corrupt or truncated") from exc
        missing = [k for k in (*_ARRAY_KEYS, "meta") if k not in contents]
        if missing:
            raise ValueError(f"{path}: not an xrl trajectories file (missing keys {missing}); "
                             "expected the schema of xrl.agents.trajectories")
        arrays = {k: contents[k] for k in _ARRAY_KEYS}
        objects = contents.get("objects")
        try:
            meta = json.loads(str(contents["meta"]))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: corrupt 'meta' entry ({exc})") from exc
        return cls(**arrays, objects=objects, meta=meta)


def _resolve_env(env: Any, num_envs: int, seed: int, env_kwargs: dict | None):
    if isinstance(env, str):
        from ..envs import make_vec_env

        return make_vec_env(env, num_envs, seed=seed, **(env_kwargs or {})), env
    if not hasattr(env, "num_envs") or not hasattr(env, "step"):
        raise TypeError(error_message("env", "an env name (e.g. 'freeway', 'coinrun') or a vectorised env from "
                                      "xrl.envs", type(env).__name__))
    if env.num_envs != num_envs:
        raise ValueError(error_message("num_envs", f"the vectorised env's num_envs={env.num_envs}", num_envs))
    return env, getattr(env, "game_name", getattr(env, "env_name", type(env).__name__))


def collect_trajectories(agent: torch.nn.Module, env: Any = "freeway", num_envs: int = 8, num_steps: int = 512,
                         seed: int = 0, *, deterministic: bool = False, device=None,
                         env_kwargs: dict | None = None, progress: bool = True) -> Trajectories:
    """Roll out ``agent`` in ``num_envs`` environments for ``num_steps`` steps each.

    Parameters
    ----------
    agent : nn.Module
        ``agent(obs [B, C, H, W]) -> (logits [B, A], value [B])`` (an :class:`~xrl.models.ImpalaCNN`, a bundled
        agent, or an :class:`~xrl.agents.SB3Policy`).
    env : str or vectorised env
        A MinAtar game name or ``"coinrun"`` (built with ``num_envs`` and ``seed`` and ``env_kwargs``), or an env
        from :mod:`xrl.envs` with ``num_envs`` environments.
    num_envs, num_steps : int
        Output arrays are ``[num_envs, num_steps, ...]``.
    seed : int
        Seeds the environments (env ``i``: ``seed + i``) and action sampling.
    deterministic : bool, default False
        Take the argmax action instead of sampling.
    device : optional
        Where the agent runs (default: the agent's device). The agent runs in eval mode without gradients (its
        modules' modes are restored).
    env_kwargs : dict, optional
        Passed to the environment when ``env`` is a name.
    progress : bool, default True
        Show a progress bar (steps).

    Returns
    -------
    Trajectories

    Examples
    --------
    >>> from xrl.agents import load_bundled_agent
    >>> traj = collect_trajectories(load_bundled_agent("breakout"), "breakout", num_envs=2, num_steps=16, seed=0)
    >>> traj.obs.shape, traj.objects.shape
    ((2, 16, 4, 10, 10), (2, 16, 4, 10, 10))
    """
    check_scalar("num_envs", num_envs, int, low=1)
    check_scalar("num_steps", num_steps, int, low=1)
    check_scalar("seed", seed, int)
    venv, env_id = _resolve_env(env, num_envs, seed, env_kwargs)
    device = resolve_device(device, agent)
    policy = ActorCriticPolicy(agent, torch_generator(seed, device), deterministic=deterministic, device=device)
    return record_trajectories(venv, policy, num_steps, seed, trajectories_meta(venv, env_id, env_kwargs, seed,
                                                                                deterministic), progress=progress)


def trajectories_meta(venv: Any, env_id: str, env_kwargs: dict | None, seed: int, deterministic: bool) -> dict:
    """The ``meta`` entry of :func:`collect_trajectories`' result."""
    return {"env_id": env_id, "env_kwargs": env_kwargs or {}, "seed": seed, "deterministic": deterministic,
            "action_names": list(getattr(venv, "action_names", []) or []),
            "channel_names": list(getattr(venv, "channel_names", []) or []),
            "object_names": list(getattr(venv, "full_channel_names", []) or [])}


def record_trajectories(venv: Any, policy: Any, num_steps: int, seed: int, meta: dict, *,
                        progress: bool = True) -> Trajectories:
    """The recording loop of :func:`collect_trajectories`: ``policy`` plays ``venv`` (reset with ``seed``) for
    ``num_steps`` steps, every step's arrays written into ``[num_envs, num_steps, ...]`` buffers (also used by
    :func:`xrl.distributed.collect_trajectories` for each worker's share of the environments)."""
    N, T = venv.num_envs, num_steps
    firsts = np.zeros((N, T), dtype=bool)
    firsts[:, 0] = True
    buffers: dict[str, np.ndarray] = {}

    def record(key: str, t: int, value: np.ndarray, dtype) -> None:
        if key not in buffers:                                          # [N, T, ...] once the first value is known
            buffers[key] = np.empty((N, T, *np.shape(value)[1:]), dtype=dtype)
        buffers[key][:, t] = value

    for step in rollout(venv, policy, seed=seed, steps=T, progress=progress, desc="trajectories"):
        t = step.t
        record("obs", t, step.obs, step.obs.dtype)
        if "objects" in step.obs_info:
            record("objects", t, step.obs_info["objects"], bool)
        record("actions", t, step.actions, np.int64)
        record("logits", t, step.extras["logits"], np.float32)
        record("values", t, step.extras["values"], np.float32)
        record("rewards", t, step.rewards, np.float32)
        record("dones", t, np.logical_or(step.terminated, step.truncated), bool)
        if t + 1 < T:
            firsts[:, t + 1] = buffers["dones"][:, t]
    return Trajectories(buffers["obs"], buffers["actions"], buffers["rewards"], firsts, buffers["dones"],
                        buffers["values"], buffers["logits"], buffers.get("objects"), meta)


def sample_observations(agent: torch.nn.Module, env: Any = "freeway", num_obs: int = 4096, every: int = 128,
                        num_envs: int = 64, seed: int = 0, *, deterministic: bool = False, device=None,
                        env_kwargs: dict | None = None, progress: bool = True) -> np.ndarray:
    """An infrequently sampled observation set: the agent plays ``num_envs`` environments and every ``every``-th
    step all their observations are kept, until ``num_obs`` are collected -> ``[num_obs, C, H, W]``.

    Sampling rarely across many episodes covers a broader distribution of observations than one contiguous
    trajectory (the paper's setting for NMF: 4,096 observations, every 128 steps). ``progress=False`` hides the
    progress bar.
    """
    check_scalar("num_obs", num_obs, int, low=1)
    check_scalar("every", every, int, low=1)
    venv, _ = _resolve_env(env, num_envs, seed, env_kwargs)
    device = resolve_device(device, agent)
    policy = ActorCriticPolicy(agent, torch_generator(seed, device), deterministic=deterministic, device=device)
    kept: list[np.ndarray] = []
    total = 0
    bar_steps = every * -(-num_obs // num_envs)                          # steps until enough are kept
    for step in rollout(venv, policy, seed=seed, steps=bar_steps, progress=progress, desc="observations"):
        if (step.t + 1) % every == 0:
            kept.append(step.next_obs.copy())
            total += len(step.next_obs)
        if total >= num_obs:
            break
    return np.concatenate(kept)[:num_obs]
