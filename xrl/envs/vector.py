"""Vectorised environments with one small interface shared by MinAtar and CoinRun.

Both :class:`VecMinAtar` and :class:`~xrl.envs.coinrun.CoinRunVecEnv` follow the gymnasium vector API with
*same-step* autoreset (the CleanRL convention)::

    obs, info = venv.reset(seed=0)                        # obs [N, C, H, W]
    obs, rewards, terminations, truncations, info = venv.step(actions)   # actions int [N]

When an episode ends in environment ``i``, ``rewards[i]`` is its last reward, ``terminations[i] | truncations[i]`` is
True and ``obs[i]`` is already the first observation of the next episode. ``info["episode_return"]`` and
``info["episode_length"]`` hold the finished episode's return and length there (NaN / 0 elsewhere).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_scalar
from .minatar import make_minatar


class VecMinAtar:
    """``num_envs`` copies of a MinAtar game stepped in lock-step in this process (MinAtar is fast: ~35k steps/s).

    Parameters
    ----------
    game : str
        MinAtar game name.
    num_envs : int, default 8
        Number of environments.
    seed : int or None
        Environment ``i`` is seeded with ``seed + i`` at the first :meth:`reset` (overridden by ``reset(seed=...)``).
    **env_kwargs
        Passed to :func:`~xrl.envs.make_minatar` (``pomdp``, ``sticky_action_prob``, ...); ``one_hot_actions`` is
        not accepted (vectorised actions are integers).

    Attributes
    ----------
    single_observation_space, single_action_space, action_names, channel_names, num_envs, envs
    """

    def __init__(self, game: str = "freeway", num_envs: int = 8, seed: int | None = None, **env_kwargs: Any):
        check_scalar("num_envs", num_envs, int, low=1)
        if env_kwargs.get("one_hot_actions"):
            raise ValueError("one_hot_actions: expected False for a vectorised env, got True; "
                             "vectorised envs take integer actions [N]")
        env_kwargs.pop("one_hot_actions", None)
        self.envs = [make_minatar(game, **env_kwargs) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.seed = seed
        first = self.envs[0]
        self.game_name = first.unwrapped.game_name
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.action_names = list(first.unwrapped.action_names)
        self.channel_names = list(getattr(first, "channel_names", first.unwrapped.channel_names))
        self.full_channel_names = list(first.unwrapped.channel_names)
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._objects: np.ndarray | None = None

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return tuple(self.single_observation_space.shape)

    @property
    def num_actions(self) -> int:
        return int(self.single_action_space.n)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        seed = self.seed if seed is None else seed
        obs, objects = [], []
        for i, env in enumerate(self.envs):
            o, info = env.reset(seed=None if seed is None else int(seed) + i)
            obs.append(o)
            objects.append(info["objects"])
        self._returns[:] = 0
        self._lengths[:] = 0
        # [N, C, 10, 10]
        return np.stack(obs), {"objects": np.stack(objects)}

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions).reshape(-1)
        if actions.shape[0] != self.num_envs:
            raise ValueError(f"actions: expected {self.num_envs} actions (one per env), got shape {actions.shape}")
        n = self.num_envs
        obs = np.empty((n, *self.observation_shape), dtype=np.float32)
        objects = np.empty((n, len(self.full_channel_names), *self.observation_shape[1:]), dtype=bool)
        rewards = np.empty(n, dtype=np.float32)
        terms = np.zeros(n, dtype=bool)
        truncs = np.zeros(n, dtype=bool)
        ep_ret = np.full(n, np.nan)
        ep_len = np.zeros(n, dtype=np.int64)
        for i, (env, a) in enumerate(zip(self.envs, actions)):
            o, r, term, trunc, info = env.step(int(a))
            self._returns[i] += r
            self._lengths[i] += 1
            if term or trunc:
                ep_ret[i], ep_len[i] = self._returns[i], self._lengths[i]
                self._returns[i], self._lengths[i] = 0.0, 0
                o, info = env.reset()
            obs[i], objects[i], rewards[i], terms[i], truncs[i] = o, info["objects"], r, term, trunc
        return obs, rewards, terms, truncs, {"objects": objects, "episode_return": ep_ret, "episode_length": ep_len}

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def __repr__(self) -> str:
        return f"VecMinAtar(game={self.game_name!r}, num_envs={self.num_envs}, obs={self.observation_shape})"


def make_vec_minatar(game: str = "freeway", num_envs: int = 8, seed: int | None = None, **env_kwargs: Any
                     ) -> VecMinAtar:
    """``num_envs`` MinAtar environments stepped together (see :class:`VecMinAtar`).

    Examples
    --------
    >>> venv = make_vec_minatar("breakout", num_envs=4, seed=0)
    >>> obs, info = venv.reset()
    >>> obs.shape
    (4, 4, 10, 10)
    """
    return VecMinAtar(game, num_envs=num_envs, seed=seed, **env_kwargs)
